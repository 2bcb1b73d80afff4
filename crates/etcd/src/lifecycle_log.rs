//! The zap lines etcd writes about a member's life (start, stop), with its messages, field
//! names and JSON types, so that log pipelines built on etcd's keep working. The lines from
//! deeper in the server (backend opened, member published, ...) are logged where they happen.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{AutoCompaction, Config};

/// Go's `time.Duration.String()`: `0s`, `100ms`, `1.5s`, `1m30s`, `2h0m0s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let fraction = |value: u128, unit: u128, suffix: &str| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            format!("{whole}{suffix}")
        } else {
            let digits = unit.ilog10() as usize;
            let frac = format!("{rest:0digits$}");
            format!("{whole}.{}{suffix}", frac.trim_end_matches('0'))
        }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return fraction(nanos, 1_000, "µs");
    }
    if nanos < 1_000_000_000 {
        return fraction(nanos, 1_000_000, "ms");
    }
    let secs_part = nanos % 60_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let hours = nanos / 3_600_000_000_000;
    let secs = fraction(secs_part, 1_000_000_000, "s");
    match (hours, minutes) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

fn urls(list: &[url::Url]) -> Value {
    Value::from(
        list.iter()
            .map(crate::config::go_url_string)
            .collect::<Vec<_>>(),
    )
}

/// etcd's "starting an etcd server" line: the configuration in force.
pub fn starting(cfg: &Config, member_initialized: bool) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (mode, retention, interval) = match &cfg.auto_compaction {
        AutoCompaction::Periodic(d) => ("periodic", go_duration(*d), go_duration(*d)),
        AutoCompaction::Revision(n) => ("revision", n.to_string(), "0s".to_string()),
    };
    let wal_dir = cfg
        .wal_dir
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let pairs: Vec<(&str, Value)> = vec![
        ("etcd-version", json!(env!("CARGO_PKG_VERSION"))),
        ("git-sha", json!("Not provided (etcd in Rust)")),
        ("go-version", json!("none (Rust)")),
        ("go-os", json!(std::env::consts::OS)),
        (
            "go-arch",
            json!(match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                a => a,
            }),
        ),
        ("max-cpu-set", json!(cpus)),
        ("max-cpu-available", json!(cpus)),
        ("member-initialized", json!(member_initialized)),
        ("name", json!(cfg.name)),
        ("data-dir", json!(cfg.data_dir.display().to_string())),
        ("wal-dir", json!(wal_dir)),
        ("wal-dir-dedicated", json!(wal_dir)),
        (
            "member-dir",
            json!(cfg.data_dir.join("member").display().to_string()),
        ),
        ("force-new-cluster", json!(cfg.force_new_cluster)),
        (
            "heartbeat-interval",
            json!(go_duration(Duration::from_millis(
                cfg.heartbeat_interval_ms
            ))),
        ),
        (
            "election-timeout",
            json!(go_duration(Duration::from_millis(cfg.election_timeout_ms))),
        ),
        (
            "initial-election-tick-advance",
            json!(cfg.initial_election_tick_advance),
        ),
        ("snapshot-count", json!(cfg.snapshot_count)),
        ("max-wals", json!(cfg.max_wals)),
        ("max-snapshots", json!(cfg.max_snapshots)),
        ("snapshot-catchup-entries", json!(5000)),
        (
            "initial-advertise-peer-urls",
            json!(urls(&cfg.initial_advertise_peer_urls)),
        ),
        ("listen-peer-urls", json!(urls(&cfg.listen_peer_urls))),
        (
            "advertise-client-urls",
            json!(urls(&cfg.advertise_client_urls)),
        ),
        ("listen-client-urls", json!(urls(&cfg.listen_client_urls))),
        ("listen-metrics-urls", json!(urls(&cfg.listen_metrics_urls))),
        ("cors", json!(cfg.cors)),
        ("host-whitelist", json!(cfg.host_whitelist)),
        ("initial-cluster", json!(cfg.initial_cluster_string())),
        (
            "initial-cluster-state",
            json!(
                if cfg.initial_cluster_state == crate::config::ClusterState::New {
                    "new"
                } else {
                    "existing"
                }
            ),
        ),
        ("initial-cluster-token", json!(cfg.initial_cluster_token)),
        (
            "quota-backend-bytes",
            json!(cfg.quota_backend_bytes_effective().unwrap_or(0)),
        ),
        ("max-request-bytes", json!(cfg.max_request_bytes)),
        ("max-concurrent-streams", json!(cfg.max_concurrent_streams)),
        ("pre-vote", json!(cfg.pre_vote)),
        (
            "initial-corrupt-check",
            json!(cfg.experimental_initial_corrupt_check),
        ),
        (
            "corrupt-check-time-interval",
            json!(go_duration(cfg.experimental_corrupt_check_time)),
        ),
        ("auto-compaction-mode", json!(mode)),
        ("auto-compaction-retention", json!(retention)),
        ("auto-compaction-interval", json!(interval)),
        (
            "discovery-url",
            json!(cfg.discovery.clone().unwrap_or_default()),
        ),
        (
            "discovery-proxy",
            json!(cfg.discovery_proxy.clone().unwrap_or_default()),
        ),
    ];
    let fields = Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    tracing::info!(
        zap_only = true,
        zap_fields = %fields,
        "starting an etcd server"
    );
}

/// etcd's "now serving peer/client/metrics", once the listeners are bound.
pub fn now_serving(cfg: &Config, member_id: u64) {
    let fields = json!({
        "local-member-id": format!("{member_id:x}"),
        "initial-advertise-peer-urls": urls(&cfg.initial_advertise_peer_urls),
        "listen-peer-urls": urls(&cfg.listen_peer_urls),
        "advertise-client-urls": urls(&cfg.advertise_client_urls),
        "listen-client-urls": urls(&cfg.listen_client_urls),
        "listen-metrics-urls": urls(&cfg.listen_metrics_urls),
    });
    tracing::info!(
        zap_only = true,
        zap_fields = %fields,
        "now serving peer/client/metrics"
    );
}

/// The name, data dir and advertised URLs that etcd's closing lines carry.
fn closing_fields(cfg: &Config) -> Value {
    json!({
        "name": cfg.name,
        "data-dir": cfg.data_dir.display().to_string(),
        "advertise-peer-urls": urls(&cfg.initial_advertise_peer_urls),
        "advertise-client-urls": urls(&cfg.advertise_client_urls),
    })
}

/// The signal that stops the member, and etcd's "closing etcd server".
pub fn closing(cfg: &Config, signal: &str) {
    tracing::info!(
        plain = format!("received {signal} signal, shutting down..."),
        signal = signal,
        "received signal; shutting down"
    );
    tracing::info!(
        zap_only = true,
        zap_fields = %closing_fields(cfg),
        "closing etcd server"
    );
}

/// etcd's "closed etcd server", once the member has stopped.
pub fn closed(cfg: &Config) {
    tracing::info!(
        zap_only = true,
        zap_fields = %closing_fields(cfg),
        "closed etcd server"
    );
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(7)), "7s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(go_duration(Duration::from_micros(3817)), "3.817ms");
    }
}
