//! `/metrics`: our metric names and types against `/usr/bin/etcd`'s (3.4) for the metrics we
//! export, counters that count what clients do, and the `--listen-metrics-urls` listener.
//! Skips with a note when /usr/bin/etcd or curl is missing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::reference::{CURL, REF_ETCD, Single, available};

/// The metrics we export, which etcd 3.4 exports with the same name and type.
const EXPORTED: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_failed_total",
    "etcd_server_proposals_pending",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_debugging_mvcc_watcher_total",
    "etcd_debugging_mvcc_watch_stream_total",
    "etcd_debugging_mvcc_slow_watcher_total",
    "etcd_server_id",
    "etcd_server_version",
    "etcd_cluster_version",
    "etcd_server_quota_backend_bytes",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_mvcc_put_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_txn_total",
    "etcd_debugging_lease_granted_total",
    "etcd_debugging_lease_revoked_total",
    "etcd_debugging_lease_renewed_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
];

/// A member's `--listen-metrics-urls` address.
fn metrics_url(server: &Single) -> &str {
    server
        .metrics
        .as_deref()
        .expect("started with a metrics listener")
}

fn curl(url: &str, post: Option<&str>) -> String {
    let mut cmd = Command::new(CURL);
    cmd.args(["-s", "--max-time", "5", url]);
    if let Some(body) = post {
        cmd.args(["-X", "POST", "-d", body]);
    }
    String::from_utf8_lossy(&cmd.output().expect("curl").stdout).into_owned()
}

/// `# TYPE name type` lines.
fn types(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// The value of an unlabelled sample.
fn value(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name}"))
}

#[test]
fn our_metrics_are_named_and_typed_as_etcds_and_count() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Single::start(REF_ETCD, &dir.path().join("etcd"), &[], true);
    let ours = Single::start(
        env!("CARGO_BIN_EXE_etcd"),
        &dir.path().join("ours"),
        &[],
        true,
    );
    let theirs = types(&curl(&format!("{}/metrics", metrics_url(&etcd)), None));
    let mine = types(&curl(&format!("{}/metrics", metrics_url(&ours)), None));
    for name in EXPORTED {
        let want = theirs
            .get(*name)
            .unwrap_or_else(|| panic!("etcd has no {name}"));
        assert_eq!(mine.get(*name), Some(want), "{name}");
    }

    // Counters count what clients do, on both listeners.
    let before = curl(&format!("{}/metrics", ours.client), None);
    curl(
        &format!("{}/v3/kv/put", ours.client),
        Some(r#"{"key":"YQ==","value":"MQ=="}"#),
    );
    curl(
        &format!("{}/v3/kv/put", ours.client),
        Some(r#"{"key":"Yg==","value":"MQ=="}"#),
    );
    curl(
        &format!("{}/v3/kv/deleterange", ours.client),
        Some(r#"{"key":"YQ=="}"#),
    );
    curl(
        &format!("{}/v3/kv/range", ours.client),
        Some(r#"{"key":"Yg=="}"#),
    );
    let after = curl(&format!("{}/metrics", metrics_url(&ours)), None);
    for (name, delta) in [
        ("etcd_mvcc_put_total", 2.0),
        ("etcd_mvcc_delete_total", 1.0),
        ("etcd_mvcc_range_total", 1.0),
    ] {
        assert_eq!(value(&after, name) - value(&before, name), delta, "{name}");
    }
    assert_eq!(value(&after, "etcd_debugging_mvcc_keys_total"), 1.0);
    assert_eq!(value(&after, "etcd_server_has_leader"), 1.0);
    // Each put was made durable in the WAL first: its fdatasyncs are in the histogram.
    assert!(value(&after, "etcd_disk_wal_fsync_duration_seconds_count") >= 2.0);
    // The gateway's calls went through the gRPC services: their bytes are counted.
    assert!(
        value(&after, "etcd_network_client_grpc_received_bytes_total")
            > value(&before, "etcd_network_client_grpc_received_bytes_total")
    );
    assert!(
        value(&after, "etcd_network_client_grpc_sent_bytes_total")
            > value(&before, "etcd_network_client_grpc_sent_bytes_total")
    );
    assert!(
        after.contains(r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 2"#),
        "{after}"
    );
    // The metrics listener serves nothing else.
    assert!(curl(&format!("{}/v3/kv/range", metrics_url(&ours)), Some("{}")).contains("404"));
}

/// `/livez` and `/readyz` as etcd 3.6: ok when the checks pass, the failed check named (503)
/// when a CORRUPT alarm is raised, `?verbose` and `?exclude=`.
#[test]
fn probes_answer_as_etcd_3_6() {
    if !Path::new(CURL).exists() {
        eprintln!("note: {CURL} missing (Debian curl); skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = Single::start(
        env!("CARGO_BIN_EXE_etcd"),
        &dir.path().join("ours"),
        &[],
        true,
    );
    let status = |path: &str| -> (String, String) {
        let out = Command::new(CURL)
            .args(["-s", "--max-time", "5", "-w", "\n%{http_code}"])
            .arg(format!("{}{path}", ours.client))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    assert_eq!(status("/livez"), ("200".into(), "ok\n".into()));
    assert_eq!(status("/readyz"), ("200".into(), "ok\n".into()));
    let (code, body) = status("/readyz?verbose&exclude=linearizable_read");
    assert_eq!(code, "200");
    assert!(body.contains("[+]data_corruption ok"), "{body}");
    assert!(body.contains("[+]linearizable_read excluded: ok"), "{body}");
    // A CORRUPT alarm: not ready, still live.
    curl(
        &format!("{}/v3/maintenance/alarm", ours.client),
        Some(r#"{"action":"ACTIVATE","memberID":"0","alarm":"CORRUPT"}"#),
    );
    let (code, body) = status("/readyz");
    assert_eq!(code, "503", "{body}");
    assert!(
        body.contains("[-]data_corruption failed: alarm activated: CORRUPT"),
        "{body}"
    );
    assert_eq!(status("/livez").0, "200");
    // And on the metrics listener too.
    assert!(
        curl(&format!("{}/readyz", metrics_url(&ours)), None).contains("data_corruption failed")
    );
}
