//! Short randomized fault runs (crates/robustness, docs/ROBUSTNESS.md) on fixed seeds: our
//! member alone under SIGKILL and SIGSTOP, three of ours under those, SIGKILL of all,
//! partitions and one-way loss, and etcd 3.4's three under the same, through the same checker. Each run's history, report and
//! logs stay in the test's temp dir while it runs; a failure prints the report.

use std::path::Path;
use std::time::Duration;

use robustness::nemesis::Fault;
use robustness::run::{RunConfig, run};

fn every_fault() -> Vec<Fault> {
    vec![
        Fault::KillOne,
        Fault::PauseOne,
        Fault::KillAll,
        Fault::Partition,
        Fault::OneWay,
    ]
}

async fn passes(binary: &str, members: usize, seconds: u64, seed: u64, faults: Vec<Fault>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = RunConfig {
        binary: binary.into(),
        members,
        duration: Duration::from_secs(seconds),
        seed,
        clients: 4,
        keys: 5,
        faults,
        segment_watchers: 2,
        compaction: true,
        dir: dir.path().join("run"),
    };
    let result = run(&cfg).await.expect("the run completes");
    let report = std::fs::read_to_string(cfg.dir.join("report.txt")).unwrap_or_default();
    assert!(result.report.ok(), "{report}");
    assert!(result.report.acknowledged_writes > 100, "{report}");
    assert!(result.report.linearizable_reads > 100, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_member_killed_and_paused() {
    passes(
        env!("CARGO_BIN_EXE_etcd"),
        1,
        10,
        1,
        vec![Fault::KillOne, Fault::PauseOne],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_members_killed_paused_partitioned() {
    passes(env!("CARGO_BIN_EXE_etcd"), 3, 15, 2, every_fault()).await;
}

/// The checker on the reference: etcd 3.4 passes it under the same faults.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_passes_the_same_checks() {
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("skipped: /usr/bin/etcd is missing (apt-get install etcd-server)");
        return;
    }
    passes("/usr/bin/etcd", 3, 10, 3, every_fault()).await;
}
