//! What the server library needs to start: already parsed and validated by the binary.

use std::path::PathBuf;
use std::time::Duration;

use etcd_transport::TlsInfo;
use url::Url;

/// The version this server reports (Status, `/version`, `etcd --version`): the etcd release we
/// are a drop-in replacement for.
pub const SERVER_VERSION: &str = "3.4.23";
/// The cluster version reported by `/version`.
pub const CLUSTER_VERSION: &str = "3.4.0";
/// The quota used when `--quota-backend-bytes` is 0, as etcd's.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// gRPC may carry this much more than `--max-request-bytes` (etcd's grpcOverheadBytes).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// TLS of one port (client or peer): certificate files, or self-signed certificates.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// Files, client-certificate checks, CRL, allowed CN/hostname, cipher suites.
    pub info: TlsInfo,
    /// `--auto-tls` / `--peer-auto-tls`: self-signed certificates kept in the data dir, used
    /// when no certificate files are given.
    pub auto: bool,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// `--wal-dir`; `<data-dir>/member/wal` when `None`.
    pub wal_dir: Option<PathBuf>,
    pub listen_client_urls: Vec<Url>,
    /// `--listen-metrics-urls`: extra listeners serving only `/metrics` and `/health` (https
    /// ones with the client TLS settings).
    pub listen_metrics_urls: Vec<Url>,
    /// `--metrics extensive`: gRPC handling-time histograms too.
    pub metrics_extensive: bool,
    pub advertise_client_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<Url>,
    /// `--initial-cluster` as (name, peer URL) pairs; a name appears once per peer URL.
    pub initial_cluster: Vec<(String, Url)>,
    pub initial_cluster_token: String,
    /// `--initial-cluster-state new` (true) or `existing` (false).
    pub initial_cluster_state_new: bool,
    pub snapshot_count: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// 0 means etcd's default of 2 GiB.
    pub quota_backend_bytes: u64,
    pub max_request_bytes: u64,
    pub max_txn_ops: usize,
    pub strict_reconfig_check: bool,
    pub pre_vote: bool,
    pub backend_batch_interval: Duration,
    pub backend_batch_limit: usize,
    /// `--experimental-watch-progress-notify-interval` (etcd: 10 minutes).
    pub watch_progress_notify_interval: Duration,
    pub client_tls: TlsSettings,
    pub peer_tls: TlsSettings,
    /// `--cors`: origins allowed to make cross-origin HTTP requests; `["*"]` allows all.
    pub cors: Vec<String>,
    /// `--bcrypt-cost` for the passwords of new users and changed passwords.
    pub bcrypt_cost: u32,
    /// `--auth-token-ttl`: how long a simple token lives after its last use.
    pub auth_token_ttl: Duration,
    /// `--auth-token`: `simple`, or `jwt,...` with its options (see `auth::jwt`).
    pub auth_token: String,
    /// `--experimental-initial-corrupt-check`: compare HashKV with peers before a restarting
    /// member starts (see `corruption.rs`).
    pub initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time`: how often the leader compares HashKV with the
    /// followers (zero: never).
    pub corrupt_check_time: Duration,
    /// `--experimental-snapshot-catchup-entries` (etcd 3.5's): entries kept in the log after a
    /// snapshot, so a slightly slow follower catches up from the log rather than a snapshot.
    pub snapshot_catchup_entries: u64,
    /// `--max-wals`: WAL segments kept at least, needed or not (0: all of them).
    pub max_wals: u64,
    /// `--max-snapshots`: etcd purges its `.snap` files beyond this; our snapshots are the
    /// backend itself, staged only while one is sent, so there are none to purge.
    pub max_snapshots: u64,
    /// `--max-concurrent-streams`: HTTP/2 streams per client connection, and calls in flight
    /// through the JSON gateway (etcd's gateway shares one gRPC connection).
    pub max_concurrent_streams: u32,
    /// `--force-new-cluster`: restart this member alone, as a one-member cluster with its data.
    pub force_new_cluster: bool,
    /// `--unsafe-no-fsync`: no WAL fdatasync (tests only; a machine crash loses writes).
    pub unsafe_no_fsync: bool,
    /// `--enable-v2`: serve the v2 API (`/v2/keys`, `/v2/members`, `/v2/stats`, ...).
    pub enable_v2: bool,
    /// `--enable-ui` (ours): serve the web console under `/ui/` on the client and metrics URLs.
    pub enable_ui: bool,
}

impl ServerConfig {
    /// A single-member configuration on the given URLs, for tests and embedding.
    pub fn single(name: &str, data_dir: PathBuf, client_url: Url, peer_url: Url) -> ServerConfig {
        ServerConfig {
            name: name.to_string(),
            data_dir,
            wal_dir: None,
            listen_client_urls: vec![client_url.clone()],
            listen_metrics_urls: Vec::new(),
            metrics_extensive: false,
            advertise_client_urls: vec![client_url],
            listen_peer_urls: vec![peer_url.clone()],
            initial_advertise_peer_urls: vec![peer_url.clone()],
            initial_cluster: vec![(name.to_string(), peer_url)],
            initial_cluster_token: "etcd-cluster".to_string(),
            initial_cluster_state_new: true,
            snapshot_count: 100_000,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            quota_backend_bytes: 0,
            max_request_bytes: 1_572_864,
            max_txn_ops: 128,
            strict_reconfig_check: true,
            pre_vote: false,
            backend_batch_interval: Duration::from_millis(100),
            backend_batch_limit: 10_000,
            watch_progress_notify_interval: Duration::from_secs(600),
            client_tls: TlsSettings::default(),
            peer_tls: TlsSettings::default(),
            cors: vec!["*".to_string()],
            bcrypt_cost: 10,
            auth_token_ttl: Duration::from_secs(300),
            auth_token: "simple".to_string(),
            initial_corrupt_check: false,
            corrupt_check_time: Duration::ZERO,
            snapshot_catchup_entries: 5000,
            max_wals: 5,
            max_concurrent_streams: u32::MAX,
            max_snapshots: 5,
            force_new_cluster: false,
            unsafe_no_fsync: false,
            enable_v2: false,
            enable_ui: false,
        }
    }

    pub fn member_dir(&self) -> PathBuf {
        self.data_dir.join("member")
    }

    /// How the WAL is written: etcd's `--max-wals` and `--unsafe-no-fsync`.
    pub fn wal_options(&self) -> etcd_wal::WalOptions {
        etcd_wal::WalOptions {
            retain_segments: match self.max_wals {
                0 => usize::MAX,
                n => usize::try_from(n).unwrap_or(usize::MAX),
            },
            fsync: !self.unsafe_no_fsync,
            lose_unsynced_on_crash: etcd_failpoints::power_loss_simulated(),
            ..etcd_wal::WalOptions::default()
        }
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.wal_dir
            .clone()
            .unwrap_or_else(|| self.member_dir().join("wal"))
    }

    pub fn backend_path(&self) -> PathBuf {
        self.snap_dir().join("db")
    }

    /// `member/snap`: the backend, and the snapshot files staged beside it.
    pub fn snap_dir(&self) -> PathBuf {
        self.member_dir().join("snap")
    }

    pub fn quota_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            DEFAULT_QUOTA_BYTES
        } else {
            self.quota_backend_bytes
        }
    }

    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout
    }

    /// Raft ticks per election timeout (etcd: election timeout / heartbeat interval).
    pub fn election_ticks(&self) -> usize {
        let heartbeat_ms = self.heartbeat_interval.as_millis().max(1);
        ((self.election_timeout.as_millis() / heartbeat_ms) as usize).max(2)
    }
}
