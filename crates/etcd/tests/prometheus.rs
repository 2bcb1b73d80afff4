//! A real Prometheus (Debian's `prometheus`) scrapes our member's `/metrics` and its query
//! language reads our samples: `etcd_server_has_leader` is 1, and a counter and a histogram
//! parse as such. Skips with a note when Prometheus or curl is missing (`.ci/run` installs
//! them).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const CURL: &str = "/usr/bin/curl";

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first result's value of an instant query, when there is one.
fn query(api: &str, expr: &str) -> Option<String> {
    let out = Command::new(CURL)
        .args(["-s", "--max-time", "5", "-G"])
        .arg(format!("{api}/api/v1/query"))
        .args(["--data-urlencode", &format!("query={expr}")])
        .output()
        .ok()?;
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":{..},"value":[t,"1"]}]}}
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_our_metrics() {
    if !Path::new(PROMETHEUS).exists() || !Path::new(CURL).exists() {
        eprintln!("skipped: {PROMETHEUS} or {CURL} is missing (apt-get install prometheus curl)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let member = common::EtcdProcess::start(&dir.path().join("m"), &[]).await;
    let mut client = member.client().await;
    client.put("scraped", "yes").await.expect("put");

    let target = member.client_url.trim_start_matches("http://");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 200ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: etcd\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
    )
    .expect("write the Prometheus config");
    let web = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
    let _prometheus = Prometheus(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let api = format!("http://{web}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let has_leader = query(&api, "etcd_server_has_leader{job=\"etcd\"}");
        let up = query(&api, "up{job=\"etcd\"}");
        if has_leader.as_deref() == Some("1") && up.as_deref() == Some("1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never read etcd_server_has_leader 1 (last {has_leader:?}, up {up:?}); \
             its log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A counter and a histogram as Prometheus understands them.
    let puts = query(&api, "etcd_mvcc_put_total{job=\"etcd\"}");
    assert!(
        puts.as_deref().and_then(|v| v.parse::<f64>().ok()) >= Some(1.0),
        "{puts:?}"
    );
    let fsyncs = query(
        &api,
        "histogram_quantile(0.99, etcd_disk_wal_fsync_duration_seconds_bucket{job=\"etcd\"})",
    );
    assert!(
        fsyncs.as_deref().is_some_and(|v| v.parse::<f64>().is_ok()),
        "{fsyncs:?}"
    );
}
