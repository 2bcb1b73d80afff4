//! `etcd --help` and `etcd --version` texts, laid out like etcd 3.4's so scripts and people find
//! the same flags, sections and defaults.

/// The usage summary etcd prints to stderr for `--help` and after a command-line syntax error;
/// print it as is.
pub fn usage() -> &'static str {
    USAGE
}

/// The flag reference etcd prints to stdout for `--help` (after [`usage()`] on stderr); print it
/// as is, it ends with its own blank line.
pub fn help() -> &'static str {
    FLAGS_HELP
}

/// `etcd --version` output, in etcd's four-line format.
pub fn version() -> String {
    format!(
        "etcd Version: {}\nGit SHA: etcd-rs\nGo Version: rust\nGo OS/Arch: {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        go_os(),
        go_arch()
    )
}

/// The target OS under Go's name for it (`GOOS`).
fn go_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    }
}

/// The target architecture under Go's name for it (`GOARCH`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        arch => arch,
    }
}

const USAGE: &str = "Usage:

  etcd [flags]
    Start an etcd server.

  etcd --version
    Show the version of etcd.

  etcd -h | --help
    Show the help information about etcd.

  etcd --config-file
    Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.

  etcd gateway
    Run the stateless pass-through etcd TCP connection forwarding proxy.

  etcd grpc-proxy
    Run the stateless etcd v3 gRPC L7 reverse proxy.

";

const FLAGS_HELP: &str = "
Member:
  --name 'default'
    Human-readable name for this member.
  --data-dir '${name}.etcd'
    Path to the data directory.
  --wal-dir ''
    Path to a dedicated WAL directory.
  --snapshot-count '100000'
    Number of committed transactions that triggers a snapshot to disk.
  --heartbeat-interval '100'
    Time (in milliseconds) of a heartbeat interval.
  --election-timeout '1000'
    Time (in milliseconds) for an election to time out. See the tuning documentation for details.
  --initial-election-tick-advance 'true'
    Whether to fast-forward the initial election ticks on boot for a faster election.
  --listen-peer-urls 'http://localhost:2380'
    List of URLs to listen on for peer traffic.
  --listen-client-urls 'http://localhost:2379'
    List of URLs to listen on for client traffic.
  --max-snapshots '5'
    Maximum number of snapshot files to retain (0 is unlimited).
  --max-wals '5'
    Maximum number of WAL files to retain (0 is unlimited).
  --quota-backend-bytes '0'
    Raise alarms when the backend size exceeds the given quota (0 defaults to the low space quota).
  --backend-batch-interval ''
    Maximum time before committing the backend transaction.
  --backend-batch-limit '0'
    Maximum number of operations before committing the backend transaction.
  --max-txn-ops '128'
    Maximum number of operations permitted in a transaction.
  --max-request-bytes '1572864'
    Maximum client request size in bytes the server will accept.
  --max-concurrent-streams 'math.MaxUint32'
    Maximum number of concurrent streams each client can open at a time.
  --grpc-keepalive-min-time '5s'
    Minimum duration a client should wait between pings to the server.
  --grpc-keepalive-interval '2h'
    How often the server pings a client to check the connection is alive (0 to disable).
  --grpc-keepalive-timeout '20s'
    How long to wait for a ping reply before closing an unresponsive connection (0 to disable).

Clustering:
  --initial-advertise-peer-urls 'http://localhost:2380'
    List of this member's peer URLs to advertise to the rest of the cluster.
  --initial-cluster 'default=http://localhost:2380'
    Initial cluster configuration for bootstrapping.
  --initial-cluster-state 'new'
    Initial cluster state ('new' or 'existing').
  --initial-cluster-token 'etcd-cluster'
    Initial cluster token for the etcd cluster during bootstrap.
    Setting it protects against accidental cross-cluster interaction when running several clusters.
  --advertise-client-urls 'http://localhost:2379'
    List of this member's client URLs to advertise to the public.
    The advertised URLs must be reachable by the machines that talk to the cluster; etcd client libraries connect through them.
  --discovery ''
    Discovery URL used to bootstrap the cluster.
  --discovery-fallback 'proxy'
    Expected behavior ('exit' or 'proxy') when the discovery service fails.
    \"proxy\" supports the v2 API only.
  --discovery-proxy ''
    HTTP proxy to use for traffic to the discovery service.
  --discovery-srv ''
    DNS SRV domain used to bootstrap the cluster.
  --discovery-srv-name ''
    Suffix of the DNS SRV name queried when bootstrapping.
  --discovery-token ''
    V3 discovery (etcd 3.6): discovery token for the etcd cluster to be bootstrapped.
  --discovery-endpoints ''
    V3 discovery (etcd 3.6): list of gRPC endpoints of the discovery service.
  --discovery-dial-timeout '2s'
    V3 discovery: dial timeout for client connections.
  --discovery-request-timeout '5s'
    V3 discovery: timeout for discovery requests (excluding dial timeout).
  --discovery-keepalive-time '2s'
    V3 discovery: keepalive time for client connections.
  --discovery-keepalive-timeout '6s'
    V3 discovery: keepalive timeout for client connections.
  --discovery-insecure-transport 'true'
    V3 discovery: disable transport security for client connections.
  --discovery-insecure-skip-tls-verify 'false'
    V3 discovery: skip server certificate verification (CAUTION: for testing only).
  --discovery-cert ''
    V3 discovery: identify secure client using this TLS certificate file.
  --discovery-key ''
    V3 discovery: identify secure client using this TLS key file.
  --discovery-cacert ''
    V3 discovery: verify certificates of TLS-enabled secure servers using this CA bundle.
  --discovery-user ''
    V3 discovery: username[:password] for authentication.
  --discovery-password ''
    V3 discovery: password for authentication (if this option is used, --discovery-user shouldn't include password).
  --strict-reconfig-check 'true'
    Reject reconfiguration requests that would cause quorum loss.
  --pre-vote 'false'
    Enable an additional Raft election phase.
  --auto-compaction-retention '0'
    Auto compaction retention length. 0 disables auto compaction.
  --auto-compaction-mode 'periodic'
    How to interpret 'auto-compaction-retention': periodic|revision. 'periodic' for a duration-based retention, in hours if no time unit is given (e.g. '5m'). 'revision' for a revision-number-based retention.
  --enable-v2 'false'
    Accept etcd V2 client requests.
  --enable-ui 'false'
    Serve the web console under /ui/ on the client and metrics URLs (on the metrics URLs together with the JSON gateway it uses, under the same auth).

Security:
  --cert-file ''
    Path to the client server TLS cert file.
  --key-file ''
    Path to the client server TLS key file.
  --client-cert-auth 'false'
    Enable client cert authentication.
  --client-crl-file ''
    Path to the client certificate revocation list file.
  --client-cert-allowed-hostname ''
    Allowed TLS hostname for client cert authentication.
  --trusted-ca-file ''
    Path to the client server TLS trusted CA cert file.
  --auto-tls 'false'
    Client TLS using generated certificates.
  --peer-cert-file ''
    Path to the peer server TLS cert file.
  --peer-key-file ''
    Path to the peer server TLS key file.
  --peer-client-cert-auth 'false'
    Enable peer client cert authentication.
  --peer-trusted-ca-file ''
    Path to the peer server TLS trusted CA file.
  --peer-cert-allowed-cn ''
    Required CN for client certs connecting to the peer endpoint.
  --peer-cert-allowed-hostname ''
    Allowed TLS hostname for inter-peer authentication.
  --peer-auto-tls 'false'
    Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.
  --peer-crl-file ''
    Path to the peer certificate revocation list file.
  --cipher-suites ''
    Comma-separated list of supported TLS cipher suites between client/server and peers (empty means the TLS library's defaults).
  --cors '*'
    Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, (empty or * means allow all).
  --host-whitelist '*'
    Acceptable hostnames from HTTP client requests, if the server is not secure (empty or * means allow all).

Auth:
  --auth-token 'simple'
    Specify a v3 authentication token type and its options ('simple' or 'jwt').
  --bcrypt-cost 10
    Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31.
  --auth-token-ttl 300
    Time (in seconds) of the auth-token-ttl.

Profiling and Monitoring:
  --enable-pprof 'false'
    Enable runtime profiling data via the HTTP server. Address is at client URL + \"/debug/pprof/\"
  --metrics 'basic'
    Set the level of detail for exported metrics; specify 'extensive' to include histogram metrics.
  --listen-metrics-urls ''
    List of URLs to listen on for the metrics and health endpoints.

Logging:
  --logger 'capnslog'
    Specify 'zap' for structured logging or 'capnslog'. [WARN] 'capnslog' will be deprecated in v3.5.
  --log-outputs 'default'
    Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or a list of comma-separated output targets.
  --log-level 'info'
    Configures the log level. Only supports debug, info, warn, error, panic, or fatal.

v2 Proxy (to be deprecated in v4):
  --proxy 'off'
    Proxy mode setting ('off', 'readonly' or 'on').
  --proxy-failure-wait 5000
    Time (in milliseconds) an endpoint will be held in a failed state.
  --proxy-refresh-interval 30000
    Time (in milliseconds) of the endpoints refresh interval.
  --proxy-dial-timeout 1000
    Time (in milliseconds) for a dial to time out.
  --proxy-write-timeout 5000
    Time (in milliseconds) for a write to time out.
  --proxy-read-timeout 0
    Time (in milliseconds) for a read to time out.

Experimental feature:
  --experimental-initial-corrupt-check 'false'
    Enable to check data corruption before serving any client/peer traffic.
  --experimental-corrupt-check-time '0s'
    Duration of time between cluster corruption check passes.
  --experimental-enable-v2v3 ''
    Serve v2 requests through the v3 backend under a given prefix.
  --experimental-backend-bbolt-freelist-type 'array'
    The type of freelist the backend uses (array and map are supported).
  --experimental-enable-lease-checkpoint 'false'
    Let the primary lessor persist lease remainingTTL to prevent indefinite auto-renewal of long-lived leases.
  --experimental-compaction-batch-limit 1000
    The maximum number of revisions deleted in each compaction batch.
  --experimental-peer-skip-client-san-verification 'false'
    Skip verification of the SAN field in client certificates for peer connections.
  --experimental-watch-progress-notify-interval '10m'
    Duration of periodic watch progress notifications.
  --experimental-warning-apply-duration '100ms'
    A warning is logged if applying a request takes longer than this duration.

Unsafe feature:
  --force-new-cluster 'false'
    Force to create a new one-member cluster.

CAUTIOUS with unsafe flag! It may break the guarantees given by the consensus protocol!

TO BE DEPRECATED:

  --debug 'false'
    Enable debug-level logging for etcd. [WARN] Will be deprecated in v3.5. Use '--log-level=debug' instead.
  --log-package-levels ''
    Specify a particular log level for each etcd package (eg: 'etcdmain=CRITICAL,etcdserver=DEBUG').

";
