//! Flags, as etcd 3.4's benchmark declares them (cobra/pflag: `--flag value` or
//! `--flag=value`; durations in Go's syntax such as `500ms` or `1m30s`).

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "benchmark", about = "A low-level benchmark tool for etcd3")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Total number of gRPC clients
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Benchmark only the leader
    #[arg(long = "target-leader", global = true)]
    pub target_leader: bool,
    /// Use full float precision
    #[arg(long, global = true)]
    pub precise: bool,
    /// 'true' to sample requests for every second
    #[arg(long, global = true)]
    pub sample: bool,
    /// dial timeout for client connections (0 uses the client's default of 2s)
    #[arg(long = "dial-timeout", global = true, value_parser = parse_go_duration, default_value = "0s")]
    pub dial_timeout: Duration,
    /// Server TLS CA file
    #[arg(long, global = true)]
    pub cacert: Option<std::path::PathBuf>,
    /// Identify HTTPS client using this SSL certificate file
    #[arg(long, global = true)]
    pub cert: Option<std::path::PathBuf>,
    /// Identify HTTPS client using this SSL key file
    #[arg(long = "key", id = "tls_key", global = true)]
    pub key: Option<std::path::PathBuf>,
    /// provide username[:password] (every client authenticates as this user)
    #[arg(long, global = true)]
    pub user: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Benchmark put
    Put(PutArgs),
    /// Benchmark range
    Range(RangeArgs),
    /// Benchmark put with transactions
    #[command(name = "txn-put")]
    TxnPut(TxnPutArgs),
    /// Benchmark a mixed load of txn-put and txn-range
    #[command(name = "txn-mixed")]
    TxnMixed(TxnMixedArgs),
    /// Benchmark lease keepalive
    #[command(name = "lease-keepalive")]
    LeaseKeepalive(LeaseKeepaliveArgs),
    /// Benchmark watch latency
    #[command(name = "watch-latency")]
    WatchLatency(WatchLatencyArgs),
    /// Benchmark watch
    Watch(WatchArgs),
    /// Benchmark for serialized key gets with many unsynced watchers
    #[command(name = "watch-get")]
    WatchGet(WatchGetArgs),
    /// Benchmark watchers at scale: event delivery to many watchers, optionally beside large
    /// ranges on the same connections (ours; etcd's benchmark has no such command)
    #[command(name = "watch-scale")]
    WatchScale(WatchScaleArgs),
    /// Benchmark leases at scale: keep-alives of many leases, or the expiry of many at once
    /// beside steady puts (ours; etcd's benchmark has no such command)
    #[command(name = "lease-scale")]
    LeaseScale(LeaseScaleArgs),
    /// Benchmark mvcc
    Mvcc(MvccArgs),
    /// Benchmark Authenticate (password checks): each request authenticates a user (ours;
    /// etcd's benchmark has no such command)
    Authenticate(AuthenticateArgs),
    /// Benchmark STM
    Stm(StmArgs),
}

#[derive(Args, Debug)]
pub struct StmArgs {
    /// Read Committed (c), Repeatable Reads (r), Serializable (s), or Snapshot (ss)
    #[arg(long, default_value = "r")]
    pub isolation: String,
    /// Total unique keys accessible by the benchmark
    #[arg(long, default_value_t = 1)]
    pub keys: u64,
    /// Total number of completed STM transactions
    #[arg(long, default_value_t = 10000)]
    pub total: usize,
    /// Number of keys to access per transaction
    #[arg(long = "keys-per-txn", default_value_t = 1)]
    pub keys_per_txn: usize,
    /// Percentage of keys to overwrite per transaction
    #[arg(long = "txn-wr-percent", default_value_t = 50)]
    pub txn_wr_percent: usize,
    /// Wrap STM transaction with a custom locking mechanism (stm, lock-client, lock-rpc)
    #[arg(long = "stm-locker", default_value = "stm")]
    pub stm_locker: String,
    /// Value size of each STM put request
    #[arg(long = "val-size", default_value_t = 8)]
    pub val_size: usize,
    /// Maximum STM transactions per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

#[derive(Args, Debug)]
pub struct MvccArgs {
    /// Interval of batching (milliseconds)
    #[arg(long = "batch-interval", default_value_t = 100)]
    pub batch_interval: u64,
    /// A limit of batched transaction
    #[arg(long = "batch-limit", default_value_t = 10000)]
    pub batch_limit: usize,
    #[command(subcommand)]
    pub command: MvccCommand,
}

#[derive(Subcommand, Debug)]
pub enum MvccCommand {
    /// Benchmark put performance of mvcc
    Put(MvccPutArgs),
}

#[derive(Args, Debug)]
pub struct MvccPutArgs {
    /// Total number of put requests
    #[arg(long, default_value_t = 100000)]
    pub total: usize,
    /// Size of key
    #[arg(long = "key-size", default_value_t = 64)]
    pub key_size: usize,
    /// Size of value
    #[arg(long = "val-size", default_value_t = 128)]
    pub val_size: usize,
    /// Number of puts per txn
    #[arg(long = "txn-ops", default_value_t = 1)]
    pub txn_ops: usize,
}

#[derive(Args, Debug)]
pub struct WatchGetArgs {
    /// Total number of watchers
    #[arg(long, default_value_t = 10000)]
    pub watchers: usize,
    /// Total number of watcher streams
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Number of events per watcher
    #[arg(long, default_value_t = 8)]
    pub events: usize,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Total watch streams
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Total watchers per stream
    #[arg(long = "watch-per-stream", default_value_t = 100)]
    pub watch_per_stream: usize,
    /// Number of keys to put per second
    #[arg(long = "put-rate", default_value_t = 0)]
    pub put_rate: u64,
    /// Number of put requests
    #[arg(long = "put-total", default_value_t = 1000)]
    pub put_total: usize,
    /// Key size of watch request
    #[arg(long = "key-size", default_value_t = 32)]
    pub key_size: usize,
    /// Maximum possible keys
    #[arg(long = "key-space-size", default_value_t = 1)]
    pub key_space_size: u64,
    /// Use sequential keys
    #[arg(long = "sequential-keys")]
    pub sequential_keys: bool,
}

#[derive(Args, Debug)]
pub struct WatchScaleArgs {
    /// Total watchers
    #[arg(long, default_value_t = 10000)]
    pub watchers: usize,
    /// Watch streams the watchers are spread over (stream i on client i % clients)
    #[arg(long, default_value_t = 100)]
    pub streams: usize,
    /// Keys the watchers are spread over: 1 puts every watcher on one key, --watchers gives
    /// each its own
    #[arg(long = "watched-keys", default_value_t = 1)]
    pub watched_keys: usize,
    /// Puts to the watched keys, in turn, over a connection of their own
    #[arg(long = "put-total", default_value_t = 100)]
    pub put_total: usize,
    /// Puts per second (0 is no limit)
    #[arg(long = "put-rate", default_value_t = 10)]
    pub put_rate: u64,
    /// Value size of the puts (at least 8: the value carries the time the put was sent)
    #[arg(long = "val-size", default_value_t = 32)]
    pub val_size: usize,
    /// Ranges kept in flight on the watchers' connections while the puts run (etcd 15402)
    #[arg(long = "range-clients", default_value_t = 0)]
    pub range_clients: usize,
    /// The key those ranges start at
    #[arg(long = "range-key", default_value = "")]
    pub range_key: String,
    /// Those ranges take every key from --range-key on (end "\0")
    #[arg(long = "range-from-key")]
    pub range_from_key: bool,
    /// Seconds to wait for the last events after the last put
    #[arg(long = "drain-timeout", default_value_t = 60)]
    pub drain_timeout_secs: u64,
}

#[derive(Args, Debug)]
pub struct LeaseScaleArgs {
    /// Leases granted (over the clients), then kept alive or left to expire
    #[arg(long, default_value_t = 100000)]
    pub leases: usize,
    /// Their TTL in seconds
    #[arg(long, default_value_t = 60)]
    pub ttl: i64,
    /// keepalive: keep every lease alive over keep-alive streams for --duration-secs (one
    /// stream per client, each renewing its share of the leases in turn, as fast as the
    /// answers come); expire: attach a key to each lease, let them all expire while puts run
    /// at --put-rate, and report the puts' latency second by second
    #[arg(long, default_value = "keepalive")]
    pub mode: String,
    /// How long the keep-alives run
    #[arg(long = "duration-secs", default_value_t = 20)]
    pub duration_secs: u64,
    /// expire: puts per second beside the expiry
    #[arg(long = "put-rate", default_value_t = 200)]
    pub put_rate: u64,
}

#[derive(Args, Debug)]
pub struct WatchLatencyArgs {
    /// Total number of put requests
    #[arg(long = "put-total", default_value_t = 1000)]
    pub put_total: usize,
    /// Number of keys to put per second
    #[arg(long = "put-rate", default_value_t = 100)]
    pub put_rate: u64,
    /// Key size of watch response
    #[arg(long = "key-size", default_value_t = 32)]
    pub key_size: usize,
    /// Value size of watch response
    #[arg(long = "val-size", default_value_t = 32)]
    pub val_size: usize,
}

#[derive(Args, Debug)]
pub struct TxnMixedArgs {
    /// Key size of mixed txn
    #[arg(long = "key-size", default_value_t = 8)]
    pub key_size: usize,
    /// Value size of mixed txn
    #[arg(long = "val-size", default_value_t = 8)]
    pub val_size: usize,
    /// Maximum txns per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Total number of txn requests
    #[arg(long, default_value_t = 10000)]
    pub total: usize,
    /// Read operation range end key. By default, we do full range query with the default limit of 1000.
    #[arg(long = "end-key", default_value = "")]
    pub end_key: String,
    /// Read operation range result limit
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
    /// Maximum possible keys
    #[arg(long = "key-space-size", default_value_t = 1)]
    pub key_space_size: u64,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Read/write ops ratio
    #[arg(long = "rw-ratio", default_value_t = 1.0)]
    pub rw_ratio: f64,
}

#[derive(Args, Debug)]
pub struct LeaseKeepaliveArgs {
    /// Total number of lease keepalive requests
    #[arg(long, default_value_t = 10000)]
    pub total: usize,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// Key size of put request
    #[arg(long = "key-size", default_value_t = 8)]
    pub key_size: usize,
    /// Value size of put request
    #[arg(long = "val-size", default_value_t = 8)]
    pub val_size: usize,
    /// Maximum puts per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Total number of put requests
    #[arg(long, default_value_t = 10000)]
    pub total: usize,
    /// Maximum possible keys
    #[arg(long = "key-space-size", default_value_t = 1)]
    pub key_space_size: u64,
    /// Use sequential keys
    #[arg(long = "sequential-keys")]
    pub sequential_keys: bool,
    /// Interval to compact database (do not duplicate this with etcd's 'auto-compaction-retention' flag) (e.g. --compact-interval=5m compacts every 5-minute)
    #[arg(long = "compact-interval", value_parser = parse_go_duration, default_value = "0s")]
    pub compact_interval: Duration,
    /// Delta between current revision and compact revision (e.g. current revision 10000, compact at 9000)
    #[arg(long = "compact-index-delta", default_value_t = 1000)]
    pub compact_index_delta: i64,
    /// 'true' to check hashkv
    #[arg(long = "check-hashkv")]
    pub check_hashkv: bool,
}

#[derive(Args, Debug)]
pub struct AuthenticateArgs {
    /// The user to authenticate, as name:password
    pub user: String,
    /// Maximum Authenticate requests per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Total number of Authenticate requests
    #[arg(long, default_value_t = 1000)]
    pub total: usize,
}

#[derive(Args, Debug)]
pub struct RangeArgs {
    /// The key to range
    pub key: String,
    /// The end of the range (exclusive)
    pub end: Option<String>,
    /// Maximum range requests per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Total number of range requests
    #[arg(long, default_value_t = 10000)]
    pub total: usize,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Maximum number of results to return from range request (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Only returns the count of keys
    #[arg(long = "count-only")]
    pub count_only: bool,
    /// Ours, not etcd's: every key from the key on (end "\0"); for lists of everything
    /// (bench/range-rss), whose keys the command line cannot spell
    #[arg(long = "from-key", conflicts_with = "end")]
    pub from_key: bool,
    /// Ours, not etcd's: read through etcd 3.7's KV.RangeStream (chunks) instead of Range
    #[arg(long)]
    pub stream: bool,
}

#[derive(Args, Debug)]
pub struct TxnPutArgs {
    /// Key size of txn put
    #[arg(long = "key-size", default_value_t = 8)]
    pub key_size: usize,
    /// Value size of txn put
    #[arg(long = "val-size", default_value_t = 8)]
    pub val_size: usize,
    /// Number of puts per txn
    #[arg(long = "txn-ops", default_value_t = 1)]
    pub txn_ops: usize,
    /// Maximum txns per second (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Total number of txn requests
    #[arg(long, default_value_t = 10000)]
    pub total: usize,
    /// Maximum possible keys
    #[arg(long = "key-space-size", default_value_t = 1)]
    pub key_space_size: u64,
}

/// Parses a Go duration (`time.ParseDuration`): a sequence of decimal numbers with units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, or plain `0`.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration \"{text}\"");
    let s = text.strip_prefix('+').unwrap_or(text);
    if s.starts_with('-') {
        return Err(bad());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total_ns = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration \"{text}\""))?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration \"{text}\""
                ));
            }
        };
        rest = &rest[unit_len..];
        total_ns += number * unit_ns;
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("-1s").is_err());
    }

    #[test]
    fn global_flags_and_defaults() {
        let cli = Cli::try_parse_from(["benchmark", "put"]).unwrap();
        assert_eq!(cli.global.endpoints, vec!["127.0.0.1:2379"]);
        assert_eq!((cli.global.conns, cli.global.clients), (1, 1));
        let Command::Put(put) = cli.command else {
            panic!("not put")
        };
        assert_eq!((put.key_size, put.val_size, put.total), (8, 8, 10000));
        assert_eq!(put.key_space_size, 1);

        let cli = Cli::try_parse_from([
            "benchmark",
            "--endpoints=a:1,b:2",
            "--conns",
            "3",
            "range",
            "foo",
            "fop",
            "--clients=7",
            "--consistency",
            "s",
        ])
        .unwrap();
        assert_eq!(cli.global.endpoints, vec!["a:1", "b:2"]);
        assert_eq!((cli.global.conns, cli.global.clients), (3, 7));
        let Command::Range(range) = cli.command else {
            panic!("not range")
        };
        assert_eq!(
            (range.key.as_str(), range.end.as_deref()),
            ("foo", Some("fop"))
        );
        assert_eq!(range.consistency, "s");
    }
}
