//! The `etcd` binary's configuration: every etcd 3.4 server flag, read the way etcd 3.4 reads it
//! (`etcdmain/config.go`, `embed/config.go`, `pkg/flags`), with etcd's defaults, precedence and
//! error messages, so an existing command line, environment or config file works unchanged.
//!
//! Sources, highest precedence first:
//! 1. command-line flags, in Go `flag` syntax: `--name v`, `--name=v`, `-name v`; booleans as
//!    `--flag` or `--flag=false` (never `--flag false`);
//! 2. `ETCD_<FLAG_NAME>` environment variables (`--initial-cluster` → `ETCD_INITIAL_CLUSTER`) for
//!    flags not given on the command line;
//! 3. etcd's defaults.
//!
//! With `--config-file` (or `ETCD_CONFIG_FILE`) only the YAML file counts, as in etcd 3.4: other
//! flags and the environment are ignored (flags are still syntax-checked first).
//!
//! ```text
//! match config::parse(std::env::args_os().skip(1), std::env::vars_os()) {
//!     Ok(parsed) => match parsed.action { Action::Run(cfg) => ..., Action::PrintVersion => ... },
//!     Err(e) => { eprintln!("{e}"); if e.shows_usage() { eprint!("{}", config::usage()) }
//!                 std::process::exit(e.exit_code()) }
//! }
//! ```
//!
//! Parsing is pure except for reading the config file: warnings come back in [`Parsed`] for the
//! caller to log once logging is set up (etcd also logs them only then).

// Parts of the API (helpers for the server's start-up) have no caller in the binary yet.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;
use url::Url;

mod cluster;
mod file;
mod flags;
mod help;
mod validate;
pub(crate) mod values;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

pub use help::{help, usage, version};
pub use values::go_url_string;

use validate::{resolve, validate};
use values::{go_quote, one_line};

/// etcd's `--quota-backend-bytes` default when the flag is 0 (`etcdserver.DefaultQuotaBytes`).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Above this etcd warns that the quota is larger than it recommends (`MaxQuotaBytes`).
pub const MAX_RECOMMENDED_QUOTA_BACKEND_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// The longest election timeout etcd accepts, in milliseconds.
pub const MAX_ELECTION_TIMEOUT_MS: u64 = 50_000;

const DEFAULT_NAME: &str = "default";
const DEFAULT_LISTEN_PEER_URL: &str = "http://localhost:2380";
const DEFAULT_LISTEN_CLIENT_URL: &str = "http://localhost:2379";
const DEFAULT_LOG_OUTPUT: &str = "default";
/// `--initial-cluster` as etcd computes it from the default name and peer URL; etcd re-derives the
/// flag from `--name` only while it still equals this string.
const DEFAULT_INITIAL_CLUSTER: &str = "default=http://localhost:2380";

/// Every etcd 3.4 server setting, typed, with etcd's defaults ([`Config::default`]). Values keep
/// etcd's meaning, including "0 means the built-in default" where etcd has it (noted per field).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    // --- Member ---
    /// `--name`: human-readable member name. Default "default".
    pub name: String,
    /// `--data-dir`; when not given, `${name}.etcd`.
    pub data_dir: PathBuf,
    /// `--wal-dir`: dedicated WAL directory; `None` keeps the WAL under the data dir.
    pub wal_dir: Option<PathBuf>,
    /// `--snapshot-count`: committed entries between snapshots. Default 100000.
    pub snapshot_count: u64,
    /// `--heartbeat-interval`, milliseconds. Default 100.
    pub heartbeat_interval_ms: u64,
    /// `--election-timeout`, milliseconds. Default 1000; at least 5x the heartbeat, at most
    /// [`MAX_ELECTION_TIMEOUT_MS`].
    pub election_timeout_ms: u64,
    /// `--initial-election-tick-advance`. Default true.
    pub initial_election_tick_advance: bool,
    /// `--listen-peer-urls`, sorted as etcd sorts them. Default http://localhost:2380.
    pub listen_peer_urls: Vec<Url>,
    /// `--listen-client-urls`, sorted. Default http://localhost:2379.
    pub listen_client_urls: Vec<Url>,
    /// `--max-snapshots` to keep (0 = unlimited). Default 5.
    pub max_snapshots: u64,
    /// `--max-wals` to keep (0 = unlimited). Default 5.
    pub max_wals: u64,
    /// `--quota-backend-bytes`: 0 = [`DEFAULT_QUOTA_BACKEND_BYTES`], negative = no quota. See
    /// [`Config::quota_backend_bytes_effective`].
    pub quota_backend_bytes: i64,
    /// `--backend-batch-interval`: longest time before committing the backend transaction
    /// (0 = backend default, 100ms).
    pub backend_batch_interval: Duration,
    /// `--backend-batch-limit`: most operations before committing (0 = backend default, 10000).
    pub backend_batch_limit: i64,
    /// `--max-txn-ops` per transaction. Default 128.
    pub max_txn_ops: u64,
    /// `--max-request-bytes` the server accepts. Default 1572864 (1.5 MiB).
    pub max_request_bytes: u64,
    /// `--max-concurrent-streams` per client connection. Default u32::MAX.
    pub max_concurrent_streams: u32,
    /// `--grpc-keepalive-min-time`: minimum client ping interval. Default 5s.
    pub grpc_keepalive_min_time: Duration,
    /// `--grpc-keepalive-interval`: server-to-client ping period (0 = off). Default 2h.
    pub grpc_keepalive_interval: Duration,
    /// `--grpc-keepalive-timeout`: wait for a ping reply before closing (0 = off). Default 20s.
    pub grpc_keepalive_timeout: Duration,

    // --- Clustering ---
    /// `--initial-advertise-peer-urls`, sorted. Default http://localhost:2380.
    pub initial_advertise_peer_urls: Vec<Url>,
    /// `--initial-cluster`, parsed. Default `default=http://localhost:2380`; when not given and
    /// `--name` is, `<name>=<each --initial-advertise-peer-url>`; empty when bootstrapping by
    /// discovery. See [`Config::initial_cluster_string`].
    pub initial_cluster: Vec<ClusterMember>,
    /// `--initial-cluster-state`. Default new.
    pub initial_cluster_state: ClusterState,
    /// `--initial-cluster-token`. Default "etcd-cluster".
    pub initial_cluster_token: String,
    /// `--advertise-client-urls`, sorted. Default http://localhost:2379; empty when
    /// `--listen-client-urls` is given without it (only allowed for a proxy).
    pub advertise_client_urls: Vec<Url>,
    /// `--discovery` URL.
    pub discovery: Option<String>,
    /// `--discovery-fallback`. Default proxy.
    pub discovery_fallback: DiscoveryFallback,
    /// `--discovery-proxy`: HTTP proxy for the discovery service.
    pub discovery_proxy: Option<String>,
    /// `--discovery-srv`: DNS domain for SRV discovery.
    pub discovery_srv: Option<String>,
    /// `--discovery-srv-name`: suffix of the SRV name.
    pub discovery_srv_name: Option<String>,
    /// etcd 3.6's v3 discovery (`--discovery-token`, `--discovery-endpoints`, ...).
    pub v3_discovery: V3Discovery,
    /// `--strict-reconfig-check`. Default true.
    pub strict_reconfig_check: bool,
    /// `--pre-vote`. Default false.
    pub pre_vote: bool,
    /// `--auto-compaction-mode` with `--auto-compaction-retention`. Default periodic, 0 (off).
    pub auto_compaction: AutoCompaction,
    /// `--enable-v2`: serve the v2 API. Default false.
    pub enable_v2: bool,
    /// `--enable-ui` (ours, not etcd's): the web console under `/ui/`. Default false: a new
    /// surface on a database's port is opt-in.
    pub enable_ui: bool,

    // --- Security ---
    /// `--cert-file`, `--key-file`, `--client-cert-auth`, `--trusted-ca-file`,
    /// `--client-crl-file`, `--client-cert-allowed-hostname`, `--auto-tls`.
    pub client_tls: TlsConfig,
    /// The `--peer-*` equivalents, plus `--peer-cert-allowed-cn` and
    /// `--experimental-peer-skip-client-san-verification`.
    pub peer_tls: TlsConfig,
    /// `--cipher-suites` (Go names), in the given order; empty = library defaults.
    pub cipher_suites: Vec<String>,
    /// `--cors` origins, sorted; `["*"]` (default) allows all.
    pub cors: Vec<String>,
    /// `--host-whitelist`, sorted; `["*"]` (default) or empty allows all.
    pub host_whitelist: Vec<String>,

    // --- Auth ---
    /// `--auth-token`: "simple" (default) or "jwt,pub-key=...,priv-key=...,sign-method=...".
    pub auth_token: String,
    /// `--bcrypt-cost`. Default 10; etcd uses 10 (with a warning) when outside 4..=31.
    pub bcrypt_cost: u64,
    /// `--auth-token-ttl`, seconds, for simple tokens. Default 300.
    pub auth_token_ttl_secs: u64,

    // --- Profiling and monitoring ---
    /// `--enable-pprof`.
    pub enable_pprof: bool,
    /// `--metrics`: "basic" (default) or "extensive".
    pub metrics: String,
    /// `--listen-metrics-urls`, sorted. Default none.
    pub listen_metrics_urls: Vec<Url>,

    // --- Logging ---
    /// `--logger`. Default capnslog (etcd 3.4's default; it warns that it is deprecated).
    pub logger: Logger,
    /// `--log-outputs`: "default", "stderr", "stdout", "systemd/journal" or file paths.
    pub log_outputs: Vec<String>,
    /// `--log-level`. Default info. See [`Config::effective_log_level`] for `--debug`.
    pub log_level: LogLevel,
    /// `--debug` (deprecated): debug logging.
    pub debug: bool,
    /// `--log-package-levels` (deprecated, capnslog only).
    pub log_package_levels: Option<String>,

    // --- v2 proxy ---
    /// `--proxy`. Default off.
    pub proxy: ProxyMode,
    /// `--proxy-failure-wait`, ms. Default 5000.
    pub proxy_failure_wait_ms: u64,
    /// `--proxy-refresh-interval`, ms. Default 30000.
    pub proxy_refresh_interval_ms: u64,
    /// `--proxy-dial-timeout`, ms. Default 1000.
    pub proxy_dial_timeout_ms: u64,
    /// `--proxy-write-timeout`, ms. Default 5000.
    pub proxy_write_timeout_ms: u64,
    /// `--proxy-read-timeout`, ms (0 = none). Default 0.
    pub proxy_read_timeout_ms: u64,

    // --- Experimental ---
    /// `--experimental-initial-corrupt-check`.
    pub experimental_initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time` (0 = no periodic check).
    pub experimental_corrupt_check_time: Duration,
    /// `--experimental-snapshot-catchup-entries` (etcd 3.5's; not in 3.4's help): entries
    /// kept in the log after a snapshot for slow followers to catch up from.
    pub experimental_snapshot_catchup_entries: u64,
    /// `--experimental-enable-v2v3`: serve v2 from v3 under this prefix.
    pub experimental_enable_v2v3: Option<String>,
    /// `--experimental-backend-bbolt-freelist-type`: "array" (default) or "map".
    pub experimental_backend_bbolt_freelist_type: String,
    /// `--experimental-enable-lease-checkpoint`.
    pub experimental_enable_lease_checkpoint: bool,
    /// `--experimental-enable-lease-checkpoint-persist` (requires the above).
    pub experimental_enable_lease_checkpoint_persist: bool,
    /// `--experimental-compaction-batch-limit` (0 = default, 1000).
    pub experimental_compaction_batch_limit: i64,
    /// `--experimental-watch-progress-notify-interval` (0 = default, 10m).
    pub experimental_watch_progress_notify_interval: Duration,
    /// `--experimental-warning-apply-duration`. Default 100ms.
    pub experimental_warning_apply_duration: Duration,

    // --- Unsafe ---
    /// `--force-new-cluster`.
    pub force_new_cluster: bool,
    /// `--unsafe-no-fsync`.
    pub unsafe_no_fsync: bool,

    // --- Other ---
    /// `--enable-grpc-gateway` (not in etcd's help; default true).
    pub enable_grpc_gateway: bool,
    /// The YAML file the configuration came from, if any.
    pub config_file: Option<PathBuf>,
}

/// One member of `--initial-cluster`: a name and its peer URLs (a name may repeat in the flag to
/// give several URLs; they are merged here).
/// etcd 3.6's v3 discovery: a v3 etcd cluster (`--discovery-endpoints`) holds the token's
/// registrations under `/_etcd/registry/<token>`. The client settings mirror etcdctl's.
#[derive(Debug, Clone, PartialEq)]
pub struct V3Discovery {
    /// `--discovery-token`.
    pub token: Option<String>,
    /// `--discovery-endpoints`: gRPC endpoints of the discovery cluster.
    pub endpoints: Vec<String>,
    /// `--discovery-dial-timeout`. Default 2s.
    pub dial_timeout: Duration,
    /// `--discovery-request-timeout`. Default 5s.
    pub request_timeout: Duration,
    /// `--discovery-keepalive-time`. Default 2s.
    pub keepalive_time: Duration,
    /// `--discovery-keepalive-timeout`. Default 6s.
    pub keepalive_timeout: Duration,
    /// `--discovery-insecure-transport`. Default true.
    pub insecure_transport: bool,
    /// `--discovery-insecure-skip-tls-verify`. Default false.
    pub insecure_skip_tls_verify: bool,
    /// `--discovery-cert`, `--discovery-key`, `--discovery-cacert`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cacert: Option<PathBuf>,
    /// `--discovery-user` (`name` or `name:password`) and `--discovery-password`.
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Default for V3Discovery {
    fn default() -> V3Discovery {
        V3Discovery {
            token: None,
            endpoints: Vec::new(),
            dial_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            keepalive_time: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(6),
            insecure_transport: true,
            insecure_skip_tls_verify: false,
            cert: None,
            key: None,
            cacert: None,
            user: None,
            password: None,
        }
    }
}

impl V3Discovery {
    /// Whether any v3 discovery setting beyond the defaults is given.
    pub fn is_set(&self) -> bool {
        self.token.is_some()
            || !self.endpoints.is_empty()
            || self.cert.is_some()
            || self.key.is_some()
            || self.cacert.is_some()
            || self.user.is_some()
            || self.password.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    pub name: String,
    /// Sorted by [`go_url_string`], as etcd sorts them.
    pub peer_urls: Vec<Url>,
}

/// TLS settings for the client or the peer listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Require and verify client certificates.
    pub client_cert_auth: bool,
    pub trusted_ca_file: Option<PathBuf>,
    pub crl_file: Option<PathBuf>,
    /// Required CN of client certificates (peer only: `--peer-cert-allowed-cn`).
    pub allowed_cn: Option<String>,
    /// Required hostname of client certificates.
    pub allowed_hostname: Option<String>,
    /// Generate a self-signed certificate when none is given (`--auto-tls`, `--peer-auto-tls`).
    pub auto_tls: bool,
    /// Peer only: skip the SAN check of client certificates.
    pub skip_client_san_verification: bool,
}

impl TlsConfig {
    /// etcd's `TLSInfo.Empty()`: no certificate configured.
    #[allow(dead_code)] // kept for the default-host and auto-compaction work; tested
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryFallback {
    Proxy,
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Off,
    Readonly,
    On,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logger {
    /// etcd 3.4's default; deprecated in 3.5.
    Capnslog,
    Zap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    DPanic,
    Panic,
    Fatal,
}

impl LogLevel {
    fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "dpanic" => LogLevel::DPanic,
            "panic" => LogLevel::Panic,
            "fatal" => LogLevel::Fatal,
            _ => return None,
        })
    }
}

/// `--auto-compaction-mode` and `--auto-compaction-retention` together, as etcd interprets them
/// (`embed.parseCompactionRetention`). A zero retention disables auto compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history; a bare number in the flag means hours.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(u64),
}

impl AutoCompaction {
    #[allow(dead_code)] // kept for the default-host and auto-compaction work; tested
    pub fn is_enabled(&self) -> bool {
        match self {
            AutoCompaction::Periodic(d) => !d.is_zero(),
            AutoCompaction::Revision(n) => *n != 0,
        }
    }
}

impl Default for Config {
    /// etcd's defaults, as if started with no flags.
    fn default() -> Self {
        let peer = url(DEFAULT_LISTEN_PEER_URL);
        let client = url(DEFAULT_LISTEN_CLIENT_URL);
        Config {
            name: DEFAULT_NAME.to_string(),
            data_dir: PathBuf::from(format!("{DEFAULT_NAME}.etcd")),
            wal_dir: None,
            snapshot_count: 100_000,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            initial_election_tick_advance: true,
            listen_peer_urls: vec![peer.clone()],
            listen_client_urls: vec![client.clone()],
            max_snapshots: 5,
            max_wals: 5,
            quota_backend_bytes: 0,
            backend_batch_interval: Duration::ZERO,
            backend_batch_limit: 0,
            max_txn_ops: 128,
            max_request_bytes: 1_572_864,
            max_concurrent_streams: u32::MAX,
            grpc_keepalive_min_time: Duration::from_secs(5),
            grpc_keepalive_interval: Duration::from_secs(2 * 60 * 60),
            grpc_keepalive_timeout: Duration::from_secs(20),
            initial_advertise_peer_urls: vec![peer.clone()],
            initial_cluster: vec![ClusterMember {
                name: DEFAULT_NAME.to_string(),
                peer_urls: vec![peer],
            }],
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "etcd-cluster".to_string(),
            advertise_client_urls: vec![client],
            discovery: None,
            discovery_fallback: DiscoveryFallback::Proxy,
            discovery_proxy: None,
            discovery_srv: None,
            discovery_srv_name: None,
            v3_discovery: V3Discovery::default(),
            strict_reconfig_check: true,
            pre_vote: false,
            auto_compaction: AutoCompaction::Periodic(Duration::ZERO),
            enable_v2: false,
            enable_ui: false,
            client_tls: TlsConfig::default(),
            peer_tls: TlsConfig::default(),
            cipher_suites: Vec::new(),
            cors: vec!["*".to_string()],
            host_whitelist: vec!["*".to_string()],
            auth_token: "simple".to_string(),
            bcrypt_cost: 10,
            auth_token_ttl_secs: 300,
            enable_pprof: false,
            metrics: "basic".to_string(),
            listen_metrics_urls: Vec::new(),
            logger: Logger::Capnslog,
            log_outputs: vec![DEFAULT_LOG_OUTPUT.to_string()],
            log_level: LogLevel::Info,
            debug: false,
            log_package_levels: None,
            proxy: ProxyMode::Off,
            proxy_failure_wait_ms: 5000,
            proxy_refresh_interval_ms: 30000,
            proxy_dial_timeout_ms: 1000,
            proxy_write_timeout_ms: 5000,
            proxy_read_timeout_ms: 0,
            experimental_initial_corrupt_check: false,
            experimental_corrupt_check_time: Duration::ZERO,
            experimental_snapshot_catchup_entries: 5000,
            experimental_enable_v2v3: None,
            experimental_backend_bbolt_freelist_type: "array".to_string(),
            experimental_enable_lease_checkpoint: false,
            experimental_enable_lease_checkpoint_persist: false,
            experimental_compaction_batch_limit: 0,
            experimental_watch_progress_notify_interval: Duration::ZERO,
            experimental_warning_apply_duration: Duration::from_millis(100),
            force_new_cluster: false,
            unsafe_no_fsync: false,
            enable_grpc_gateway: true,
            config_file: None,
        }
    }
}

/// Parses a URL constant; only used for the defaults above, which are valid.
fn url(s: &str) -> Url {
    match Url::parse(s) {
        Ok(u) => u,
        Err(e) => unreachable!("default URL {s} must parse: {e}"),
    }
}

impl Config {
    /// The backend quota in bytes: `None` when disabled (negative flag), the 2 GiB default for 0.
    pub fn quota_backend_bytes_effective(&self) -> Option<u64> {
        match self.quota_backend_bytes {
            q if q < 0 => None,
            0 => Some(DEFAULT_QUOTA_BACKEND_BYTES),
            q => Some(q.unsigned_abs()),
        }
    }

    /// `--election-timeout` in heartbeat ticks (etcd's `ElectionTicks`).
    #[allow(dead_code)] // kept for the default-host and auto-compaction work; tested
    pub fn election_ticks(&self) -> u64 {
        self.election_timeout_ms / self.heartbeat_interval_ms.max(1)
    }

    /// The level to log at: `--debug` forces debug, as etcd does.
    pub fn effective_log_level(&self) -> LogLevel {
        if self.debug {
            LogLevel::Debug
        } else {
            self.log_level
        }
    }

    /// `--initial-cluster` in etcd's canonical form (`types.URLsMap.String()`): `name=url` pairs,
    /// sorted, comma-separated.
    pub fn initial_cluster_string(&self) -> String {
        let mut pairs: Vec<String> = self
            .initial_cluster
            .iter()
            .flat_map(|m| {
                m.peer_urls
                    .iter()
                    .map(move |u| format!("{}={}", m.name, go_url_string(u)))
            })
            .collect();
        pairs.sort();
        pairs.join(",")
    }
}

/// What the command line asks for, plus everything worth logging about how it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub action: Action,
    /// Problems etcd logs as warnings (unrecognised `ETCD_*` variables, deprecated flags, ...);
    /// each says what to do.
    pub warnings: Vec<String>,
    /// What etcd logs at info level while reading the configuration (environment variables
    /// used, the config file loaded).
    pub notices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start the server (or the v2 proxy, per [`Config::proxy`]) with this configuration.
    Run(Box<Config>),
    /// `--version`: print [`version()`] to stdout and exit 0.
    PrintVersion,
    /// `-h`/`--help`: print [`usage()`] to stderr and [`help()`] to stdout, exit 0.
    PrintHelp,
    /// `etcd gateway ...` or `etcd grpc-proxy ...`: a different program; `args` follow it.
    Subcommand { name: String, args: Vec<OsString> },
}

/// Why the configuration was rejected. `Display` is one line naming the flag, variable or file
/// key and the bad value, in etcd's words where etcd has them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// An unknown flag (Go's flag package wording).
    #[error("flag provided but not defined: -{}", one_line(.0))]
    UnknownFlag(String),
    /// A malformed flag such as `---x` or `-=x`.
    #[error("bad flag syntax: {}", one_line(.0))]
    BadFlagSyntax(String),
    /// A value-taking flag at the end of the command line.
    #[error("flag needs an argument: -{0}")]
    MissingArgument(&'static str),
    /// `--bool-flag=value` with a value that is not a Go boolean.
    #[error("invalid boolean value {} for -{flag}: parse error", go_quote(.value))]
    InvalidBool { flag: &'static str, value: String },
    /// A flag value that does not parse or is not allowed.
    #[error("invalid value {} for flag -{flag}: {}", go_quote(.value), one_line(.reason))]
    InvalidFlagValue {
        flag: &'static str,
        value: String,
        reason: String,
    },
    /// A command-line argument that is not valid UTF-8.
    #[error("invalid argument {}: not valid UTF-8", go_quote(.0))]
    NotUtf8(String),
    /// A leftover argument that is not a flag (etcd: `'x' is not a valid flag`).
    #[error("'{}' is not a valid flag", one_line(.0))]
    NotAFlag(String),
    /// An `ETCD_*` variable whose value does not parse.
    #[error("invalid value {} for {}: {}", go_quote(.value), one_line(.var), one_line(.reason))]
    InvalidEnv {
        var: String,
        value: String,
        reason: String,
    },
    /// The config file cannot be read or is not YAML.
    #[error("config file {}: {}", go_quote(.path), one_line(.reason))]
    File { path: String, reason: String },
    /// A config-file key with a value of the wrong type or not allowed.
    #[error("config file {}: key {}: {}", go_quote(.path), go_quote(.key), one_line(.reason))]
    FileKey {
        path: String,
        key: String,
        reason: String,
    },
    /// A combination of settings etcd refuses (its validation messages).
    #[error("{}", one_line(.0))]
    Invalid(String),
}

impl ConfigError {
    /// The exit status etcd uses: 2 for command-line syntax errors (Go's flag package), 1 for
    /// everything found while validating.
    pub fn exit_code(&self) -> i32 {
        if self.shows_usage() { 2 } else { 1 }
    }

    /// Whether etcd prints [`usage()`] to stderr after this error (flag syntax errors).
    pub fn shows_usage(&self) -> bool {
        matches!(
            self,
            ConfigError::UnknownFlag(_)
                | ConfigError::BadFlagSyntax(_)
                | ConfigError::MissingArgument(_)
                | ConfigError::InvalidBool { .. }
                | ConfigError::InvalidFlagValue { .. }
                | ConfigError::NotUtf8(_)
        )
    }
}

/// Reads the configuration from the command line (`args`, without the program name), the
/// environment (`env`, e.g. `std::env::vars_os()`) and, if named, the config file. The
/// environment is a list rather than a lookup function because etcd warns about every `ETCD_*`
/// variable that names no flag.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Parsed, ConfigError> {
    let args: Vec<OsString> = args.into_iter().collect();
    if let Some(first) = args.first().and_then(|a| a.to_str())
        && (first == "gateway" || first == "grpc-proxy")
    {
        return Ok(Parsed {
            action: Action::Subcommand {
                name: first.to_string(),
                args: args[1..].to_vec(),
            },
            warnings: Vec::new(),
            notices: Vec::new(),
        });
    }
    let env = flags::Env::new(env);

    let mut st = Staging::new();
    let cmdline = match flags::parse_command_line(&mut st, &args)? {
        flags::CommandLine::Help => return Ok(st.into_parsed(Action::PrintHelp)),
        flags::CommandLine::Flags(c) => c,
    };
    if let Some(extra) = cmdline.positional.first() {
        return Err(ConfigError::NotAFlag(extra.clone()));
    }
    if st.print_version {
        return Ok(st.into_parsed(Action::PrintVersion));
    }

    // As etcd: the file named by the flag, else by ETCD_CONFIG_FILE, replaces every other source.
    let config_file = if st.config_file.is_empty() {
        env.get("ETCD_CONFIG_FILE").unwrap_or_default()
    } else {
        st.config_file.clone()
    };
    if !config_file.is_empty() {
        let mut fst = Staging::new();
        fst.warnings = std::mem::take(&mut st.warnings);
        warn_ignored_sources(&mut fst, &cmdline.set, &env);
        fst.notices.push(format!(
            "Loading server configuration from {}. Other configuration command line flags and \
             environment variables will be ignored if provided.",
            go_quote(&config_file)
        ));
        file::load(&mut fst, &config_file)?;
        fst.cfg.config_file = Some(PathBuf::from(&config_file));
        validate(&mut fst, false)?;
        let cfg = resolve(&mut fst)?;
        return Ok(fst.into_parsed(Action::Run(Box::new(cfg))));
    }

    flags::apply_env(&mut st, &cmdline.set, &env)?;
    let is_set = |name: &str| st.set.contains(name);
    // etcd: listening on explicit client URLs means the default advertise URL is wrong.
    if is_set("listen-client-urls") && !is_set("advertise-client-urls") && !st.may_be_proxy() {
        st.cfg.advertise_client_urls.clear();
    }
    // etcd: discovery replaces the default initial cluster.
    let discovering = st.cfg.discovery.is_some()
        || st.cfg.v3_discovery.is_set()
        || st.cfg.discovery_srv.is_some()
        || st.cfg.discovery_srv_name.is_some();
    if discovering && !is_set("initial-cluster") {
        st.initial_cluster.clear();
    }
    let allow_unset_advertise = st.may_be_proxy();
    validate(&mut st, allow_unset_advertise)?;
    let cfg = resolve(&mut st)?;
    Ok(st.into_parsed(Action::Run(Box::new(cfg))))
}

/// Says which command-line flags and `ETCD_*` variables a config file makes etcd ignore; etcd
/// ignores them silently, which surprises people.
fn warn_ignored_sources(st: &mut Staging, cmdline_set: &BTreeSet<&'static str>, env: &flags::Env) {
    let flags: Vec<String> = cmdline_set
        .iter()
        .filter(|n| **n != "config-file" && **n != "version")
        .map(|n| format!("--{n}"))
        .collect();
    if !flags.is_empty() {
        st.warnings.push(format!(
            "command-line flags {} are ignored because a config file is used; set them in the \
             config file instead",
            flags.join(" ")
        ));
    }
    let vars: Vec<String> = env
        .etcd_vars()
        .filter(|k| *k != "ETCD_CONFIG_FILE")
        .map(str::to_string)
        .collect();
    if !vars.is_empty() {
        st.warnings.push(format!(
            "environment variables {} are ignored because a config file is used; set them in \
             the config file instead",
            vars.join(" ")
        ));
    }
}

/// Values as etcd holds them between reading the sources and validating. The settings etcd
/// validates only after all sources are read stay raw strings here, so that errors come out in
/// etcd's order and with its exit status; everything else is already typed in `cfg`.
struct Staging {
    cfg: Config,
    /// `--initial-cluster`, unparsed: etcd derives it from `--name` by comparing strings.
    initial_cluster: String,
    initial_cluster_state: String,
    auto_compaction_mode: String,
    auto_compaction_retention: String,
    logger: String,
    log_level: String,
    /// The deprecated `--log-output`; reconciled with `--log-outputs` as etcd 3.4 does.
    log_output_deprecated: Vec<String>,
    discovery_fallback: String,
    proxy: String,
    config_file: String,
    print_version: bool,
    /// Flags given on the command line or by the environment (Go's `flag.Visit` set).
    set: BTreeSet<&'static str>,
    warnings: Vec<String>,
    notices: Vec<String>,
}

impl Staging {
    fn new() -> Staging {
        Staging {
            // The data dir is resolved to ${name}.etcd at the end, once the name is known.
            cfg: Config {
                data_dir: PathBuf::new(),
                ..Config::default()
            },
            initial_cluster: DEFAULT_INITIAL_CLUSTER.to_string(),
            initial_cluster_state: "new".to_string(),
            auto_compaction_mode: "periodic".to_string(),
            auto_compaction_retention: "0".to_string(),
            logger: "capnslog".to_string(),
            log_level: "info".to_string(),
            log_output_deprecated: vec![DEFAULT_LOG_OUTPUT.to_string()],
            discovery_fallback: "proxy".to_string(),
            proxy: "off".to_string(),
            config_file: String::new(),
            print_version: false,
            set: BTreeSet::new(),
            warnings: Vec::new(),
            notices: Vec::new(),
        }
    }

    /// etcd's `mayBeProxy`: this process may end up a v2 proxy, which needs no advertise URLs.
    fn may_be_proxy(&self) -> bool {
        self.proxy != "off" || (self.cfg.discovery.is_some() && self.discovery_fallback == "proxy")
    }

    fn into_parsed(self, action: Action) -> Parsed {
        Parsed {
            action,
            warnings: self.warnings,
            notices: self.notices,
        }
    }
}
