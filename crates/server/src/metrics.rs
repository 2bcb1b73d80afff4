//! `/metrics`: etcd's Prometheus metrics, with its names, labels and types.
//!
//! Two kinds:
//! - counters bumped where things happen, each one atomic add: the MVCC operations applied
//!   (counted from each applied request's answer, as etcd counts its transaction's ranges,
//!   puts and deletes), gRPC calls started and handled (`grpc.rs` of this module's layer);
//! - gauges read from the member's state when scraped: leader, Raft indexes, backend sizes,
//!   keys, quota, versions. Nothing on the write path waits for a scrape.
//!
//! WAL fsync and backend commit durations come from observers the WAL and the store call after
//! each fdatasync and each durable commit (ours commits durably about every 100 ms, as etcd's
//! backend does).
//!
//! Peer bytes, round trips and heartbeat failures are counted by the Raft thread's links
//! ([`crate::peer_stats`]); slow applies by the apply loop.
//!
//! `--metrics extensive` adds gRPC handling-time histograms, as etcd does.

use std::sync::Arc;

use etcd_api::etcdserverpb::{TxnResponse, response_op};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, exponential_buckets,
};

use crate::apply::{ApplyResponse, ApplyResult};
use crate::config::{CLUSTER_VERSION, SERVER_VERSION};
use crate::peer_stats::PeerStats;
use crate::server::EtcdServer;

pub mod grpc;

/// Every metric this member exports.
pub struct Metrics {
    registry: Registry,
    // etcd_mvcc_*
    pub put_total: IntCounter,
    pub delete_total: IntCounter,
    pub range_total: IntCounter,
    pub txn_total: IntCounter,
    keys_total: IntGauge,
    db_total_size: IntGauge,
    db_total_size_in_use: IntGauge,
    // etcd_server_*
    has_leader: IntGauge,
    is_leader: IntGauge,
    pub leader_changes_seen_total: IntCounter,
    proposals_committed: IntGauge,
    proposals_applied: IntGauge,
    pub proposals_failed_total: IntCounter,
    quota_backend_bytes: IntGauge,
    server_id: IntGaugeVec,
    // grpc_server_*
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    /// `grpc_server_handling_seconds`, with `--metrics extensive` only.
    pub grpc_handling: Option<HistogramVec>,
    /// `/service/method` to its counters (see `grpc::MethodCounters`).
    grpc_methods: std::collections::HashMap<String, Arc<grpc::MethodCounters>>,
    pub lease_granted_total: IntCounter,
    pub lease_revoked_total: IntCounter,
    pub lease_renewed_total: IntCounter,
    /// `etcd_debugging_lease_ttl_total`: the TTLs leases were granted with.
    lease_ttl: Histogram,
    proposals_pending: IntGauge,
    // etcd_disk_*
    pub wal_fsync_duration: Histogram,
    pub backend_commit_duration: Histogram,
    // etcd_network_client_grpc_*
    pub grpc_sent_bytes: IntCounter,
    pub grpc_received_bytes: IntCounter,
    // etcd_debugging_mvcc_* of watches
    watchers: IntGauge,
    watch_streams: IntGauge,
    slow_watchers: IntGauge,
    /// `etcd_server_slow_apply_total`: applies that took longer than etcd's 100 ms.
    pub slow_apply_total: IntCounter,
    /// `etcd_network_peer_*` and `etcd_server_heartbeat_send_failures_total`, kept by the
    /// Raft thread's links; also the figures of `/v2/stats/self` and `/v2/stats/leader`.
    pub peers: Arc<PeerStats>,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help)).expect("a valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::with_opts(Opts::new(name, help)).expect("a valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

/// etcd's disk latency histogram: 1 ms to about 8 s, doubling.
fn disk_histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let buckets = exponential_buckets(0.001, 2.0, 14).expect("valid buckets");
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("a valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("registered once");
    h
}

fn labelled_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("registered once");
    g
}

fn labelled_counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

/// etcd's peer round-trip histogram: 0.1 ms to about 3.3 s, doubling, per peer.
fn round_trip_histogram(registry: &Registry) -> HistogramVec {
    let buckets = exponential_buckets(0.0001, 2.0, 16).expect("valid buckets");
    let h = HistogramVec::new(
        HistogramOpts::new(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
        )
        .buckets(buckets),
        &["To"],
    )
    .expect("a valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("registered once");
    h
}

/// etcd labels the cluster version as major.minor ("3.4").
fn cluster_minor(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((at, _)) => &version[..at],
        None => version,
    }
}

impl Metrics {
    /// `--metrics basic`.
    pub fn new() -> Arc<Metrics> {
        Metrics::with_detail(false)
    }

    /// `--metrics extensive` when `extensive`.
    pub fn with_detail(extensive: bool) -> Arc<Metrics> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(process));
        }
        let r = &registry;
        // Fixed-label gauges etcd sets to 1 at start.
        labelled_gauge(
            r,
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            &["server_version"],
        )
        .with_label_values(&[SERVER_VERSION])
        .set(1);
        labelled_gauge(
            r,
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            &["cluster_version"],
        )
        .with_label_values(&[cluster_minor(CLUSTER_VERSION)])
        .set(1);
        let mut m = Metrics {
            put_total: counter(
                r,
                "etcd_mvcc_put_total",
                "Total number of puts seen by this member.",
            ),
            delete_total: counter(
                r,
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            ),
            range_total: counter(
                r,
                "etcd_mvcc_range_total",
                "Total number of ranges seen by this member.",
            ),
            txn_total: counter(
                r,
                "etcd_mvcc_txn_total",
                "Total number of txns seen by this member.",
            ),
            keys_total: gauge(r, "etcd_debugging_mvcc_keys_total", "Total number of keys."),
            db_total_size: gauge(
                r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_total_size_in_use: gauge(
                r,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            has_leader: gauge(
                r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            leader_changes_seen_total: counter(
                r,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_committed: gauge(
                r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: gauge(
                r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_failed_total: counter(
                r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            quota_backend_bytes: gauge(
                r,
                "etcd_server_quota_backend_bytes",
                "Current backend storage quota size in bytes.",
            ),
            server_id: labelled_gauge(
                r,
                "etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                &["server_id"],
            ),
            grpc_started: labelled_counter(
                r,
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &["grpc_method", "grpc_service", "grpc_type"],
            ),
            grpc_handled: labelled_counter(
                r,
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_code", "grpc_method", "grpc_service", "grpc_type"],
            ),
            lease_granted_total: counter(
                r,
                "etcd_debugging_lease_granted_total",
                "The total number of granted leases.",
            ),
            lease_revoked_total: counter(
                r,
                "etcd_debugging_lease_revoked_total",
                "The total number of revoked leases.",
            ),
            lease_renewed_total: counter(
                r,
                "etcd_debugging_lease_renewed_total",
                "The number of renewed leases seen by the leader.",
            ),
            lease_ttl: {
                let buckets = exponential_buckets(1.0, 2.0, 24).expect("valid buckets");
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "etcd_debugging_lease_ttl_total",
                        "Bucketed histogram of lease TTLs.",
                    )
                    .buckets(buckets),
                )
                .expect("a valid metric");
                r.register(Box::new(h.clone())).expect("registered once");
                h
            },
            proposals_pending: gauge(
                r,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            wal_fsync_duration: disk_histogram(
                r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            ),
            backend_commit_duration: disk_histogram(
                r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
            ),
            grpc_sent_bytes: counter(
                r,
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            grpc_received_bytes: counter(
                r,
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
            watchers: gauge(
                r,
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            ),
            watch_streams: gauge(
                r,
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            ),
            slow_watchers: gauge(
                r,
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            ),
            grpc_handling: extensive.then(|| {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "grpc_server_handling_seconds",
                        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                    ),
                    &["grpc_method", "grpc_service", "grpc_type"],
                )
                .expect("a valid metric");
                r.register(Box::new(h.clone())).expect("registered once");
                h
            }),
            slow_apply_total: counter(
                r,
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            peers: Arc::new(PeerStats::new(
                labelled_counter(
                    r,
                    "etcd_network_peer_sent_bytes_total",
                    "The total number of bytes sent to peers.",
                    &["To"],
                ),
                labelled_counter(
                    r,
                    "etcd_network_peer_received_bytes_total",
                    "The total number of bytes received from peers.",
                    &["From"],
                ),
                round_trip_histogram(r),
                counter(
                    r,
                    "etcd_server_heartbeat_send_failures_total",
                    "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
                ),
            )),
            grpc_methods: std::collections::HashMap::new(),
            registry,
        };
        // Every method listed at zero from the start, as go-grpc-prometheus does, and its
        // counters resolved once for the middleware.
        for (service, methods) in grpc::METHODS {
            for method in *methods {
                let counters = Arc::new(grpc::MethodCounters::new(&m, service, method));
                m.grpc_methods
                    .insert(format!("/{service}/{method}"), counters);
            }
        }
        Arc::new(m)
    }

    /// Counts what one applied request did to the key space, as etcd counts the ranges, puts
    /// and deletes of each write transaction (a txn counts once, for its own ops, when it has
    /// more than one).
    pub fn count_applied(&self, result: &ApplyResult) {
        let Ok(applied) = result else { return };
        match &applied.response {
            ApplyResponse::Put(_) => self.put_total.inc(),
            ApplyResponse::DeleteRange(_) => self.delete_total.inc(),
            ApplyResponse::Txn(txn) => self.count_txn(txn),
            ApplyResponse::LeaseGrant(granted) => {
                self.lease_granted_total.inc();
                self.lease_ttl.observe(granted.ttl as f64);
            }
            ApplyResponse::LeaseRevoke => self.lease_revoked_total.inc(),
            _ => {}
        }
    }

    /// Counts a txn's ops, and the txn itself when it has more than one, as etcd does for a
    /// read-only txn served without a log entry and for an applied one alike.
    pub fn count_txn(&self, txn: &TxnResponse) {
        if self.count_txn_ops(txn) > 1 {
            self.txn_total.inc();
        }
    }

    fn count_txn_ops(&self, txn: &TxnResponse) -> usize {
        let mut ops = 0;
        for op in &txn.responses {
            match &op.response {
                Some(response_op::Response::ResponseRange(_)) => {
                    self.range_total.inc();
                    ops += 1;
                }
                Some(response_op::Response::ResponsePut(_)) => {
                    self.put_total.inc();
                    ops += 1;
                }
                Some(response_op::Response::ResponseDeleteRange(_)) => {
                    self.delete_total.inc();
                    ops += 1;
                }
                Some(response_op::Response::ResponseTxn(nested)) => {
                    ops += self.count_txn_ops(nested);
                }
                None => {}
            }
        }
        ops
    }

    /// The text exposition, with the gauges read from `server` now.
    pub fn render(&self, server: &EtcdServer) -> String {
        let leader = server.leader();
        self.has_leader.set(i64::from(leader != 0));
        self.is_leader
            .set(i64::from(leader != 0 && leader == server.member_id));
        self.proposals_committed
            .set(i64::try_from(server.commit_index()).unwrap_or(i64::MAX));
        self.proposals_applied
            .set(i64::try_from(server.applied_index()).unwrap_or(i64::MAX));
        self.proposals_pending
            .set(i64::try_from(server.wait.in_flight()).unwrap_or(i64::MAX));
        let watch = server.watch_hub.stats();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.watchers.set(count(watch.synced + watch.unsynced));
        self.watch_streams.set(count(watch.streams));
        self.slow_watchers.set(count(watch.unsynced));
        self.quota_backend_bytes
            .set(i64::try_from(server.cfg.quota_bytes()).unwrap_or(i64::MAX));
        self.db_total_size
            .set(i64::try_from(server.store.db_size_bytes()).unwrap_or(i64::MAX));
        self.db_total_size_in_use
            .set(i64::try_from(server.store.db_size_in_use_bytes()).unwrap_or(i64::MAX));
        self.keys_total
            .set(i64::try_from(server.store.live_key_count()).unwrap_or(i64::MAX));
        self.server_id
            .with_label_values(&[&format!("{:x}", server.member_id)])
            .set(1);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_version_label_is_major_minor() {
        assert_eq!(cluster_minor("3.4.0"), "3.4");
        assert_eq!(cluster_minor("3.4"), "3.4");
    }
}
