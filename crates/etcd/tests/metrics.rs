//! `/metrics`: our metric names and types against `/usr/bin/etcd`'s (3.4) for the metrics we
//! export, counters that count what clients do, and the `--listen-metrics-urls` listener; in a
//! cluster of ours, the peer traffic metrics and the v2 stats that come from the same counts.
//! Skips with a note when /usr/bin/etcd or curl is missing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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
    "etcd_server_slow_apply_total",
    "etcd_server_heartbeat_send_failures_total",
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
    "etcd_debugging_lease_ttl_total",
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

/// `--metrics extensive`: gRPC handling-time histograms, typed as etcd's, that time the calls.
#[test]
fn extensive_metrics_time_grpc_calls() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = &["--metrics", "extensive"];
    let etcd = Single::start(REF_ETCD, &dir.path().join("etcd"), args, false);
    let ours = Single::start(
        env!("CARGO_BIN_EXE_etcd"),
        &dir.path().join("ours"),
        args,
        false,
    );
    for server in [&etcd, &ours] {
        curl(
            &format!("{}/v3/kv/put", server.client),
            Some(r#"{"key":"YQ==","value":"MQ=="}"#),
        );
    }
    let theirs = curl(&format!("{}/metrics", etcd.client), None);
    let mine = curl(&format!("{}/metrics", ours.client), None);
    let name = "grpc_server_handling_seconds";
    assert_eq!(types(&mine).get(name), types(&theirs).get(name), "{name}");
    assert_eq!(
        types(&mine).get(name).map(String::as_str),
        Some("histogram")
    );
    let put = r#"grpc_server_handling_seconds_count{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} "#;
    let count = |page: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(put))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    assert_eq!(count(&mine), count(&theirs), "one Put timed on each");
    // Without the flag there is no such histogram, as in etcd.
    let basic = Single::start(
        env!("CARGO_BIN_EXE_etcd"),
        &dir.path().join("basic"),
        &[],
        false,
    );
    assert!(!curl(&format!("{}/metrics", basic.client), None).contains(name));
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

/// The sum of a labelled metric's samples whose labels contain `label`, and how many there are.
fn labelled_sum(exposition: &str, name: &str, label: &str) -> (f64, usize) {
    let samples: Vec<f64> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix('{'))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse().ok())
        .collect();
    (samples.iter().sum(), samples.len())
}

/// In a three-member cluster the leader counts bytes to each follower and times its heartbeat
/// round trips, followers count bytes from the leader, and `/v2/stats` shows the same traffic.
#[tokio::test(flavor = "multi_thread")]
async fn peer_traffic_is_counted_in_metrics_and_v2_stats() {
    if !Path::new(CURL).exists() {
        eprintln!("skipped: {CURL} is missing");
        return;
    }
    let mut options = common::cluster::ClusterOptions::new(3);
    options.args.push("--enable-v2".into());
    let c = common::cluster::Cluster::start(options).await;
    let mut client = common::cluster::connect(&c.members[0].client_url, Duration::from_secs(5))
        .await
        .expect("connect");
    for i in 0..10 {
        client.put(format!("k{i}"), "v").await.expect("put");
    }
    let page = |m: &common::cluster::Member| curl(&format!("{}/metrics", m.client_url), None);
    let leader = c
        .members
        .iter()
        .find(|m| value(&page(m), "etcd_server_is_leader") == 1.0)
        .expect("a leader");
    let followers: Vec<_> = c.members.iter().filter(|m| m.id != leader.id).collect();
    // Heartbeats go out every 50 ms: wait for a few round trips to each follower.
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader_page = loop {
        let text = page(leader);
        let (trips, peers) = labelled_sum(
            &text,
            "etcd_network_peer_round_trip_time_seconds_count",
            "To=",
        );
        if peers == 2 && trips >= 4.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat round trips counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for f in &followers {
        let to = format!("To=\"{:x}\"", f.id);
        let (sent, n) = labelled_sum(&leader_page, "etcd_network_peer_sent_bytes_total", &to);
        assert!(n == 1 && sent > 0.0, "nothing sent to {to}:\n{leader_page}");
        let from = format!("From=\"{:x}\"", leader.id);
        let (received, n) = labelled_sum(&page(f), "etcd_network_peer_received_bytes_total", &from);
        assert!(n == 1 && received > 0.0, "nothing received from the leader");
    }

    // The same traffic in etcd's v2 stats.
    let stats: serde_json::Value = serde_json::from_str(&curl(
        &format!("{}/v2/stats/leader", leader.client_url),
        None,
    ))
    .expect("leader stats JSON");
    for f in &followers {
        let follower = &stats["followers"][format!("{:x}", f.id)];
        assert!(
            follower["counts"]["success"].as_u64().unwrap_or(0) >= 1,
            "{stats}"
        );
        let latency = &follower["latency"];
        let (min, max) = (latency["minimum"].as_f64(), latency["maximum"].as_f64());
        assert!(min.is_some_and(|m| m > 0.0) && min <= max, "{stats}");
    }
    let own: serde_json::Value =
        serde_json::from_str(&curl(&format!("{}/v2/stats/self", leader.client_url), None))
            .expect("self stats JSON");
    assert!(
        own["sendAppendRequestCnt"].as_u64().unwrap_or(0) >= 10,
        "{own}"
    );
    let theirs: serde_json::Value = serde_json::from_str(&curl(
        &format!("{}/v2/stats/self", followers[0].client_url),
        None,
    ))
    .expect("self stats JSON");
    assert!(
        theirs["recvAppendRequestCnt"].as_u64().unwrap_or(0) >= 10,
        "{theirs}"
    );
}
