//! The proxy's own metrics (etcd's `etcd_grpc_proxy_*` names and types), served on
//! `/proxy/metrics` as etcd 3.5 does; `/metrics` is the metrics of a member, fetched through
//! the proxy's connection to it, as etcd 3.4's proxy answers.

use prometheus::{Encoder, IntCounter, IntGauge, Opts, Registry, TextEncoder};

pub struct ProxyMetrics {
    registry: Registry,
    pub watchers_coalescing: IntGauge,
    pub events_coalescing: IntCounter,
    pub cache_keys: IntGauge,
    /// Gauges, not counters, in etcd: kept so for dashboards that read them.
    pub cache_hits: IntGauge,
    pub cache_misses: IntGauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
        .namespace("etcd")
        .subsystem("grpc_proxy")
}

impl ProxyMetrics {
    pub fn new() -> ProxyMetrics {
        let registry = Registry::new();
        let gauge = |name, help| {
            let g = IntGauge::with_opts(opts(name, help)).expect("a valid metric name");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let watchers_coalescing = gauge(
            "watchers_coalescing_total",
            "Total number of current watchers coalescing",
        );
        let cache_keys = gauge("cache_keys_total", "Total number of keys/ranges cached");
        let cache_hits = gauge("cache_hits_total", "Total number of cache hits");
        let cache_misses = gauge("cache_misses_total", "Total number of cache misses");
        let events_coalescing = IntCounter::with_opts(opts(
            "events_coalescing_total",
            "Total number of events coalescing",
        ))
        .expect("a valid metric name");
        registry
            .register(Box::new(events_coalescing.clone()))
            .expect("registered once");
        ProxyMetrics {
            registry,
            watchers_coalescing,
            events_coalescing,
            cache_keys,
            cache_hits,
            cache_misses,
        }
    }

    /// The Prometheus text exposition of the proxy's metrics.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on metrics the registry would have refused.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
