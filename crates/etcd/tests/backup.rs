//! Backups: `Maintenance.Snapshot` streams the backend as etcd 3.4's bbolt file with its
//! SHA-256, taken while writes go on, and etcd's own tools save, check and restore it (those
//! parts skip with a note when /usr/bin/etcd and /usr/bin/etcdctl are missing).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{EtcdProcess, free_port};
use etcd_api::etcdserverpb::{CompactionRequest, LeaseGrantRequest, PutRequest, SnapshotRequest};
use etcd_api::mvccpb::KeyValue;
use prost::Message;
use tokio_stream::StreamExt;

const REF_ETCD: &str = "/usr/bin/etcd";
const REF_CTL: &str = "/usr/bin/etcdctl";

/// The whole Snapshot stream: the file, and the trailer that came last.
async fn fetch_snapshot(etcd: &EtcdProcess) -> (Vec<u8>, Vec<u8>) {
    let mut c = etcd.client().await;
    let mut stream = c
        .maintenance
        .snapshot(SnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner();
    let mut blobs = Vec::new();
    let mut last_remaining = u64::MAX;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        assert!(
            chunk.remaining_bytes <= last_remaining,
            "remaining bytes go down"
        );
        last_remaining = chunk.remaining_bytes;
        blobs.push(chunk.blob);
    }
    assert_eq!(last_remaining, 0);
    let trailer = blobs.pop().expect("a trailer");
    (blobs.concat(), trailer)
}

#[tokio::test]
async fn snapshot_streams_every_record_as_etcds_bbolt_file_with_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("a.etcd"), &[]).await;
    let mut c = etcd.client().await;
    let lease = c
        .lease
        .lease_grant(LeaseGrantRequest { ttl: 600, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id;
    for i in 0..200 {
        c.put(format!("k{i:03}"), format!("v{i}")).await.unwrap();
    }
    c.kv.put(PutRequest {
        key: b"leased".to_vec(),
        value: b"x".to_vec(),
        lease,
        ..PutRequest::default()
    })
    .await
    .unwrap();
    c.delete("k000").await.unwrap();
    c.kv.compact(CompactionRequest {
        revision: 50,
        physical: true,
    })
    .await
    .unwrap();

    let (file, sha) = fetch_snapshot(&etcd).await;
    assert_eq!(
        sha,
        ring::digest::digest(&ring::digest::SHA256, &file).as_ref(),
        "the trailer is the file's SHA-256"
    );
    assert_eq!(
        file.len() % 4096,
        0,
        "whole pages, so etcd's tools find the trailer"
    );
    let db = etcd_bbolt::Db::from_bytes(file).expect("a bbolt file");
    assert!(db.check().is_empty(), "{:?}", db.check());
    let (buckets, _) = db.read_all().unwrap();
    let buckets: BTreeMap<Vec<u8>, etcd_bbolt::Bucket> = buckets.into_iter().collect();
    let names: Vec<&[u8]> = buckets.keys().map(Vec::as_slice).collect();
    assert_eq!(
        names,
        [
            &b"alarm"[..],
            b"auth",
            b"authRoles",
            b"authUsers",
            b"cluster",
            b"key",
            b"lease",
            b"members",
            b"members_removed",
            b"meta"
        ]
    );
    let records: Vec<KeyValue> = buckets[&b"key"[..]]
        .values()
        .map(|v| KeyValue::decode(v.as_slice()).unwrap())
        .collect();
    assert_eq!(
        records.last().unwrap().key,
        b"k000",
        "the tombstone is the newest record"
    );
    assert!(
        records
            .iter()
            .any(|kv| kv.key == b"leased" && kv.lease == lease)
    );
    // Each key was written once, so the compaction removed nothing: 200 puts, the leased
    // key and the tombstone (which holds only its key).
    assert_eq!(records.len(), 202);
    assert!(
        records
            .iter()
            .filter(|kv| kv.mod_revision != 0)
            .all(|kv| kv.create_revision >= 2 && kv.version == 1)
    );
    let meta = &buckets[&b"meta"[..]];
    assert!(u64::from_be_bytes(meta[&b"consistent_index"[..]].clone().try_into().unwrap()) > 0);
    assert!(meta.contains_key(&b"finishedCompactRev"[..]));
    let leases = &buckets[&b"lease"[..]];
    assert!(leases.contains_key(&(lease as u64).to_be_bytes()[..]));
    let members = &buckets[&b"members"[..]];
    assert_eq!(members.len(), 1);
    let member: serde_json::Value =
        serde_json::from_slice(members.values().next().unwrap()).unwrap();
    assert_eq!(member["name"], "test");
    assert_eq!(member["clientURLs"][0], etcd.client_url);
    assert_eq!(buckets[&b"cluster"[..]][&b"clusterVersion"[..]], b"3.4.0");
}

fn ctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new(REF_CTL)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .expect("etcdctl")
}

/// etcd's etcdctl saves our snapshot while a writer goes on, checks it, restores it, and
/// etcd 3.4 serves every key written before the save began from the restored data dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_saves_checks_and_restores_our_snapshot_taken_under_writes() {
    if !(Path::new(REF_ETCD).exists() && Path::new(REF_CTL).exists()) {
        eprintln!(
            "note: {REF_ETCD} or {REF_CTL} missing (Debian etcd-server, etcd-client); skipping"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&dir.path().join("ours.etcd"), &[]).await;
    let mut c = etcd.client().await;
    for i in 0..300 {
        c.put(format!("before/{i:03}"), format!("v{i}"))
            .await
            .unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (mut c, stop) = (etcd.client().await, stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = c.put(format!("during/{i:06}"), "x").await;
                i += 1;
            }
        })
    };
    let file = dir.path().join("backup.db");
    let endpoint = etcd.client_url.clone();
    let file_arg = file.display().to_string();
    let saved =
        tokio::task::spawn_blocking(move || ctl(&endpoint, &["snapshot", "save", &file_arg]))
            .await
            .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );

    let status = ctl(
        "127.0.0.1:1",
        &[
            "snapshot",
            "status",
            &file.display().to_string(),
            "-w",
            "json",
        ],
    );
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["revision"].as_i64().unwrap() >= 301, "{status}");

    let restored = dir.path().join("restored.etcd");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let client = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(REF_CTL)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored)
        .args(["--name", "r", "--initial-cluster", &format!("r={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reference = Command::new(REF_ETCD)
        .args(["--name", "r", "--data-dir"])
        .arg(&restored)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("r={peer}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let out = ctl(&client, &["get", "before/", "--prefix", "-w", "json"]);
        if out.status.success() {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not serve the restored data"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reference.kill();
    let _ = reference.wait();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["count"], 300, "{listed}");
}
