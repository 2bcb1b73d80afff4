//! `/v2/stats/self`, `/v2/stats/leader` and `/v2/stats/store` in etcd's JSON: the v2 store's
//! operation counts, and what the Raft links count ([`crate::peer_stats`]): appends sent and
//! received with their rates, and each follower's heartbeat round trips as its latency.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::members::http_error;
use super::method_not_allowed;
use crate::server::EtcdServer;
use crate::v2::event::rfc3339_nano;
use crate::v2::json::JsonWriter;
use crate::v2::unix_nanos;

/// When this member started serving v2 (etcd's stats start time).
static STARTED: OnceLock<(SystemTime, Instant)> = OnceLock::new();

pub fn mark_start() {
    STARTED.get_or_init(|| (SystemTime::now(), Instant::now()));
}

fn started() -> (SystemTime, Instant) {
    *STARTED.get_or_init(|| (SystemTime::now(), Instant::now()))
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The body of a Go `json.Marshal` (no trailing newline).
fn marshal(w: JsonWriter) -> String {
    let mut s = w.finish_line();
    s.pop();
    s
}

pub async fn self_stats(State(server): State<Arc<EtcdServer>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let (start, start_instant) = started();
    let start = format!("\"{}\"", rfc3339_nano(unix_nanos(start)));
    let name = server.cfg.name.clone();
    let state = if server.is_leader() {
        "StateLeader"
    } else {
        "StateFollower"
    };
    let mut w = JsonWriter::default();
    w.begin_object();
    w.field_str("name", &name);
    w.field_str("id", &format!("{:x}", server.member_id));
    w.field_str("state", state);
    w.field_raw("startTime", &start);
    w.begin_object_field("leaderInfo");
    w.field_str("leader", &format!("{:x}", server.leader()));
    w.field_str("uptime", &go_duration(start_instant.elapsed().as_nanos()));
    w.field_raw("startTime", &start);
    w.end_object();
    let appends = server.metrics.peers.appends();
    // etcd leaves the rates out when they are zero (`omitempty`).
    w.field_u64("recvAppendRequestCnt", appends.received);
    if appends.receive_package_rate != 0.0 {
        w.field_raw("recvPkgRate", &go_float(appends.receive_package_rate));
    }
    if appends.receive_bandwidth_rate != 0.0 {
        w.field_raw(
            "recvBandwidthRate",
            &go_float(appends.receive_bandwidth_rate),
        );
    }
    w.field_u64("sendAppendRequestCnt", appends.sent);
    if appends.send_package_rate != 0.0 {
        w.field_raw("sendPkgRate", &go_float(appends.send_package_rate));
    }
    if appends.send_bandwidth_rate != 0.0 {
        w.field_raw("sendBandwidthRate", &go_float(appends.send_bandwidth_rate));
    }
    w.end_object();
    json(marshal(w))
}

pub async fn leader_stats(State(server): State<Arc<EtcdServer>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    if !server.is_leader() {
        return http_error(StatusCode::FORBIDDEN, "not current leader");
    }
    let members = server.cluster_state().membership.members;
    let mut w = JsonWriter::default();
    w.begin_object();
    w.field_str("leader", &format!("{:x}", server.member_id));
    w.begin_object_field("followers");
    let latencies = server.metrics.peers.latencies();
    for id in members.keys().filter(|id| **id != server.member_id) {
        let l = latencies.get(id).copied().unwrap_or_default();
        w.begin_object_field(&format!("{id:x}"));
        w.begin_object_field("latency");
        // etcd starts a follower's minimum at 1<<63 until its first success.
        let minimum = if l.successes == 0 {
            (1u64 << 63) as f64
        } else {
            l.minimum
        };
        for (field, value) in [
            ("current", l.current),
            ("average", l.average),
            ("standardDeviation", l.standard_deviation),
            ("minimum", minimum),
            ("maximum", l.maximum),
        ] {
            w.field_raw(field, &go_float(value));
        }
        w.end_object();
        w.begin_object_field("counts");
        w.field_u64("fail", l.failures);
        w.field_u64("success", l.successes);
        w.end_object();
        w.end_object();
    }
    w.end_object();
    w.end_object();
    json(marshal(w))
}

pub async fn store_stats(State(server): State<Arc<EtcdServer>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let (stats, watchers) = {
        let store = server.v2.lock();
        (store.stats().clone(), store.watcher_count())
    };
    let mut w = JsonWriter::default();
    w.begin_object();
    for (name, value) in [
        ("getsSuccess", stats.gets.0),
        ("getsFail", stats.gets.1),
        ("setsSuccess", stats.sets.0),
        ("setsFail", stats.sets.1),
        ("deleteSuccess", stats.deletes.0),
        ("deleteFail", stats.deletes.1),
        ("updateSuccess", stats.updates.0),
        ("updateFail", stats.updates.1),
        ("createSuccess", stats.creates.0),
        ("createFail", stats.creates.1),
        ("compareAndSwapSuccess", stats.compare_and_swaps.0),
        ("compareAndSwapFail", stats.compare_and_swaps.1),
        ("compareAndDeleteSuccess", stats.compare_and_deletes.0),
        ("compareAndDeleteFail", stats.compare_and_deletes.1),
        ("expireCount", stats.expires),
        ("watchers", watchers as u64),
    ] {
        w.field_u64(name, value);
    }
    w.end_object();
    json(marshal(w))
}

/// A float64 as Go's `encoding/json` writes it: the shortest form that reads back the same,
/// in exponent form below 1e-6 and from 1e21 on.
fn go_float(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        // Rust writes `1.5e21`, Go's JSON `1.5e+21`; both `1e-7`.
        let text = format!("{value:e}");
        match text.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                format!("{mantissa}e+{exponent}")
            }
            _ => text,
        }
    } else {
        format!("{value}")
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5s`, `12ms`, `3µs`, `0s`.
pub fn go_duration(nanos: u128) -> String {
    let frac = |value: u128, unit: u128, digits: usize| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let f = format!("{rest:0digits$}");
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    };
    match nanos {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", frac(n, 1_000, 3)),
        n if n < 1_000_000_000 => format!("{}ms", frac(n, 1_000_000, 6)),
        n => {
            let hours = n / 3_600_000_000_000;
            let minutes = n / 60_000_000_000 % 60;
            let seconds = frac(n % 60_000_000_000, 1_000_000_000, 9);
            match (hours, minutes) {
                (0, 0) => format!("{seconds}s"),
                (0, m) => format!("{m}m{seconds}s"),
                (h, m) => format!("{h}h{m}m{seconds}s"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{go_duration, go_float};

    #[test]
    fn floats_as_go_json_writes_them() {
        assert_eq!(go_float(0.213), "0.213");
        assert_eq!(go_float(4.0), "4");
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(1e-7), "1e-7");
        assert_eq!(go_float((1u64 << 63) as f64), "9223372036854776000");
        assert_eq!(go_float(1.5e21), "1.5e+21");
    }

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(999), "999ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(12_000_000), "12ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(62_000_000_000), "1m2s");
        assert_eq!(go_duration(3_723_000_000_001), "1h2m3.000000001s");
    }
}
