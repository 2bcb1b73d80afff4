//! What this member's Raft links see of its peers, for `/metrics` and the v2 stats:
//! - bytes sent to and received from each peer (`etcd_network_peer_{sent,received}_bytes_total`);
//! - round trips of the leader's heartbeats, heartbeat to response, per follower
//!   (`etcd_network_peer_round_trip_time_seconds`, and the latency figures of
//!   `/v2/stats/leader`; etcd times its stream writes there, a round trip says more);
//! - heartbeats that left later than twice the heartbeat interval after the previous one to
//!   the same peer, as etcd detects them (`etcd_server_heartbeat_send_failures_total`), and
//!   heartbeats dropped because the peer was down (the `fail` count of `/v2/stats/leader`);
//! - appends sent and received, with etcd's rates over the last 200 (`/v2/stats/self`).
//!
//! The Raft thread updates these as it writes and reads its sockets: each update is an
//! atomic add on counters it resolved once per peer, or a short lock taken once per heartbeat.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

/// etcd's `queueCapacity`: rates are over the last this many appends.
const RATE_WINDOW: usize = 200;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Latency of one follower as `/v2/stats/leader` reports it, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub current: f64,
    pub average: f64,
    average_square: f64,
    pub standard_deviation: f64,
    pub minimum: f64,
    pub maximum: f64,
    pub successes: u64,
    pub failures: u64,
}

impl Latency {
    fn record(&mut self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let n = self.successes as f64;
        let total = n * self.average;
        let total_square = n * self.average_square;
        self.successes += 1;
        self.current = ms;
        self.maximum = if self.successes == 1 {
            ms
        } else {
            self.maximum.max(ms)
        };
        self.minimum = if self.successes == 1 {
            ms
        } else {
            self.minimum.min(ms)
        };
        let n = self.successes as f64;
        self.average = (total + ms) / n;
        self.average_square = (total_square + ms * ms) / n;
        self.standard_deviation = (self.average_square - self.average * self.average)
            .max(0.0)
            .sqrt();
    }
}

/// One peer's counters, resolved once and kept by the links.
pub struct PeerCounters {
    pub sent_bytes: IntCounter,
    pub received_bytes: IntCounter,
    round_trip: Histogram,
    latency: Mutex<Latency>,
}

impl PeerCounters {
    pub fn round_trip(&self, took: Duration) {
        self.round_trip.observe(took.as_secs_f64());
        lock(&self.latency).record(took);
    }

    pub fn send_failed(&self) {
        lock(&self.latency).failures += 1;
    }

    pub fn latency(&self) -> Latency {
        *lock(&self.latency)
    }
}

/// Appends and their sizes over the last [`RATE_WINDOW`], for etcd's package and bandwidth
/// rates.
#[derive(Default)]
struct RateWindow {
    items: VecDeque<(Instant, u64)>,
    bytes: u64,
}

impl RateWindow {
    fn insert(&mut self, at: Instant, bytes: u64) {
        if self.items.len() == RATE_WINDOW
            && let Some((_, old)) = self.items.pop_front()
        {
            self.bytes -= old;
        }
        self.items.push_back((at, bytes));
        self.bytes += bytes;
    }

    /// (packages per second, bytes per second); zero when idle for a second, as etcd.
    fn rate(&mut self, now: Instant) -> (f64, f64) {
        let (Some((first, _)), Some((last, _))) = (self.items.front(), self.items.back()) else {
            return (0.0, 0.0);
        };
        if now.duration_since(*last) > Duration::from_secs(1) {
            self.items.clear();
            self.bytes = 0;
            return (0.0, 0.0);
        }
        let span = last.duration_since(*first).as_secs_f64();
        if span == 0.0 {
            // etcd divides by zero here and reports +Inf, which its JSON cannot carry.
            return (0.0, 0.0);
        }
        (self.items.len() as f64 / span, self.bytes as f64 / span)
    }
}

/// What `/v2/stats/self` shows of appends.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AppendStats {
    pub sent: u64,
    pub received: u64,
    pub send_package_rate: f64,
    pub send_bandwidth_rate: f64,
    pub receive_package_rate: f64,
    pub receive_bandwidth_rate: f64,
}

pub struct PeerStats {
    sent_bytes: IntCounterVec,
    received_bytes: IntCounterVec,
    round_trip: HistogramVec,
    pub heartbeat_send_failures: IntCounter,
    peers: Mutex<BTreeMap<u64, Arc<PeerCounters>>>,
    sent_appends: AtomicU64,
    received_appends: AtomicU64,
    send_rate: Mutex<RateWindow>,
    receive_rate: Mutex<RateWindow>,
}

impl PeerStats {
    pub fn new(
        sent_bytes: IntCounterVec,
        received_bytes: IntCounterVec,
        round_trip: HistogramVec,
        heartbeat_send_failures: IntCounter,
    ) -> PeerStats {
        PeerStats {
            sent_bytes,
            received_bytes,
            round_trip,
            heartbeat_send_failures,
            peers: Mutex::new(BTreeMap::new()),
            sent_appends: AtomicU64::new(0),
            received_appends: AtomicU64::new(0),
            send_rate: Mutex::new(RateWindow::default()),
            receive_rate: Mutex::new(RateWindow::default()),
        }
    }

    /// The counters of `peer`, made on first use.
    pub fn peer(&self, peer: u64) -> Arc<PeerCounters> {
        lock(&self.peers)
            .entry(peer)
            .or_insert_with(|| {
                let label = format!("{peer:x}");
                Arc::new(PeerCounters {
                    sent_bytes: self.sent_bytes.with_label_values(&[&label]),
                    received_bytes: self.received_bytes.with_label_values(&[&label]),
                    round_trip: self.round_trip.with_label_values(&[&label]),
                    latency: Mutex::new(Latency::default()),
                })
            })
            .clone()
    }

    /// The latency figures of every peer seen so far.
    pub fn latencies(&self) -> BTreeMap<u64, Latency> {
        lock(&self.peers)
            .iter()
            .map(|(id, c)| (*id, c.latency()))
            .collect()
    }

    pub fn append_sent(&self, bytes: usize, at: Instant) {
        self.sent_appends.fetch_add(1, Ordering::Relaxed);
        lock(&self.send_rate).insert(at, bytes as u64);
    }

    pub fn append_received(&self, bytes: usize, at: Instant) {
        self.received_appends.fetch_add(1, Ordering::Relaxed);
        lock(&self.receive_rate).insert(at, bytes as u64);
    }

    pub fn appends(&self) -> AppendStats {
        let now = Instant::now();
        let (send_package_rate, send_bandwidth_rate) = lock(&self.send_rate).rate(now);
        let (receive_package_rate, receive_bandwidth_rate) = lock(&self.receive_rate).rate(now);
        AppendStats {
            sent: self.sent_appends.load(Ordering::Relaxed),
            received: self.received_appends.load(Ordering::Relaxed),
            send_package_rate,
            send_bandwidth_rate,
            receive_package_rate,
            receive_bandwidth_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_etcds_running_figures() {
        let mut l = Latency::default();
        l.record(Duration::from_millis(2));
        l.record(Duration::from_millis(4));
        assert_eq!(l.successes, 2);
        assert_eq!(l.current, 4.0);
        assert_eq!(l.minimum, 2.0);
        assert_eq!(l.maximum, 4.0);
        assert!((l.average - 3.0).abs() < 1e-9);
        assert!((l.standard_deviation - 1.0).abs() < 1e-9);
    }

    #[test]
    fn rates_cover_the_window_and_fade_when_idle() {
        let start = Instant::now();
        let mut w = RateWindow::default();
        for i in 0..=RATE_WINDOW as u64 {
            w.insert(start + Duration::from_millis(i * 5), 100);
        }
        assert_eq!(w.items.len(), RATE_WINDOW);
        let last = start + Duration::from_millis(RATE_WINDOW as u64 * 5);
        let (packages, bytes) = w.rate(last);
        // 200 appends over 199 intervals of 5 ms.
        assert!((packages - 200.0 / 0.995).abs() < 1e-6, "{packages}");
        assert!((bytes - 20_000.0 / 0.995).abs() < 1e-3, "{bytes}");
        assert_eq!(w.rate(last + Duration::from_secs(2)), (0.0, 0.0));
    }
}
