//! Corruption checks between members: a member whose backend was damaged offline (one value
//! changed, same revision) is refused at start by `--experimental-initial-corrupt-check`, and
//! found by the leader's `--experimental-corrupt-check-time`, which raises the CORRUPT alarm:
//! then writes fail with etcd's `etcdserver: corrupt cluster` on every member.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, ClusterOptions};
use etcd_api::etcdserverpb::{AlarmRequest, AlarmType, alarm_request::AlarmAction};
use etcd_api::mvccpb::KeyValue;
use etcd_mvcc::{ImportMeta, Importer, Store, StoreOptions};
use prost::Message;

/// Rewrites the backend at `db` with the value of `key` changed in place: the same revisions,
/// another hash. What a flipped bit in a record does, without redb's checksums noticing.
fn damage_value(db: &Path, key: &[u8]) {
    let copy = db.with_extension("damaged");
    {
        let store = Store::open(db, StoreOptions::default()).unwrap();
        let view = store.view().unwrap();
        let mut imp = Importer::create(&copy).unwrap();
        let mut changed = false;
        view.for_each_record(|k, v| {
            let mut kv = KeyValue::decode(v).unwrap();
            if kv.key == key {
                kv.value = b"damaged".to_vec();
                changed = true;
            }
            imp.record(k, &kv.encode_to_vec())
        })
        .unwrap();
        assert!(changed, "no record of the key to damage");
        for (name, value) in view.meta_range("").unwrap() {
            imp.ext(&name, value);
        }
        let (index, term) = store.consistent_index();
        imp.finish(&ImportMeta {
            consistent_index: index,
            term,
            ..Default::default()
        })
        .unwrap();
    }
    std::fs::rename(&copy, db).unwrap();
}

async fn write_keys(cluster: &Cluster, n: usize) {
    let mut c = cluster.client(0, Duration::from_secs(10)).await;
    for i in 0..n {
        c.put(format!("key/{i:02}"), format!("value {i}"))
            .await
            .unwrap();
    }
    // Every member has applied the last write before one is stopped.
    for slot in 0..cluster.members.len() {
        let mut c = cluster.client(slot, Duration::from_secs(10)).await;
        c.get(format!("key/{:02}", n - 1)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_member_is_refused_at_start_by_the_initial_check() {
    let mut options = ClusterOptions::new(3);
    options
        .args
        .push("--experimental-initial-corrupt-check".to_string());
    let mut cluster = Cluster::start(options).await;
    write_keys(&cluster, 10).await;
    let victim = 2;
    let id = cluster.members[victim].id;
    cluster.terminate(victim).await;
    damage_value(
        &cluster.members[victim].data_dir.join("member/snap/db"),
        b"key/03",
    );
    cluster.spawn(victim);
    let exit = cluster.wait_exit(victim).await;
    assert!(!exit.success());
    let log = cluster.members[victim].log();
    assert!(
        log.contains(&format!(
            "etcdmain: {id:x} found data inconsistency with peers"
        )),
        "{}",
        cluster.members[victim].log_tail(20)
    );

    // An undamaged member restarts through the same check.
    cluster.kill(1);
    cluster.restart(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_periodic_check_raises_the_corrupt_alarm() {
    let mut cluster =
        Cluster::start(ClusterOptions::new(3).arg("--experimental-corrupt-check-time", "300ms"))
            .await;
    write_keys(&cluster, 10).await;
    let leader = cluster.wait_leader(&[0, 1, 2]).await;
    let victim = (leader + 1) % 3;
    cluster.terminate(victim).await;
    damage_value(
        &cluster.members[victim].data_dir.join("member/snap/db"),
        b"key/05",
    );
    cluster.restart(victim).await;

    let mut c = cluster.client(leader, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alarms = c
            .maintenance
            .alarm(AlarmRequest {
                action: AlarmAction::Get as i32,
                member_id: 0,
                alarm: AlarmType::None as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .alarms;
        if alarms.iter().any(|a| a.alarm == AlarmType::Corrupt as i32) {
            assert!(alarms.iter().all(|a| a.member_id == 0), "{alarms:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no CORRUPT alarm; alarms: {alarms:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for slot in 0..3 {
        let mut c = cluster.client(slot, Duration::from_secs(10)).await;
        let err = c.put("after", "x").await.unwrap_err().to_string();
        assert!(
            err.contains("etcdserver: corrupt cluster"),
            "member {slot}: {err}"
        );
    }
}

/// A WAL damaged before its end, or a backend damaged on disk, stops the start with an error
/// naming the file (and the offset, for the WAL) and what the operator can do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_refused_at_start_naming_file_and_remedy() {
    for what in ["wal", "backend"] {
        let dir = tempfile::tempdir().unwrap();
        let mut etcd = common::EtcdProcess::start(&dir.path().join("data"), &[]).await;
        let mut c = etcd.client().await;
        for i in 0..20 {
            c.put(format!("k{i}"), "v").await.unwrap();
        }
        etcd.kill();
        let member = dir.path().join("data/member");
        let file = if what == "wal" {
            std::fs::read_dir(member.join("wal"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "wal"))
                .expect("a WAL segment")
        } else {
            member.join("snap/db")
        };
        let mut bytes = std::fs::read(&file).unwrap();
        // One byte early in the WAL, where records always are; the backend's header, which
        // every open reads (a flipped byte in a page the file does not use yet would go
        // unnoticed, and rightly).
        let (mut at, end) = if what == "wal" { (200, 201) } else { (0, 16) };
        while at < end.min(bytes.len()) {
            bytes[at] ^= 0xff;
            at += 1;
        }
        std::fs::write(&file, &bytes).unwrap();
        let args = etcd.args();
        let err_path = dir.path().join("err.log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_etcd"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        // Bounded: a member that starts on the damaged file would never exit by itself.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: the member started on a damaged file");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success(), "{what}: started on a damaged file");
        let err = std::fs::read_to_string(&err_path).unwrap();
        assert!(err.contains(&file.display().to_string()), "{what}: {err}");
        assert!(err.contains("etcdctl member remove"), "{what}: {err}");
        if what == "wal" {
            assert!(err.contains("at offset"), "{err}");
        }
    }
}
