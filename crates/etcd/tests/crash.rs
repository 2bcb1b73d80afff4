//! Crash safety: clients write while the server is SIGKILLed at random moments; after each
//! restart every acknowledged write must be there with the revision it was acknowledged
//! with, and the store's revision must never go back.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::EtcdProcess;
use rand::Rng;

const KILLS: usize = 20;
const WRITERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdProcess::start(&dir.path().join("crash.etcd"), &[]).await;
    // key -> (value, revision) for every write the server acknowledged.
    let acked: Arc<Mutex<BTreeMap<String, (String, i64)>>> = Arc::default();
    let mut highest_revision_seen = 0i64;
    let mut rng = rand::rng();

    for round in 0..KILLS {
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let mut client = etcd.client().await;
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for seq in 0.. {
                    let key = format!("round{round:02}/writer{w}/{seq:06}");
                    let value = format!("value-{round}-{w}-{seq}");
                    match client.put(key.clone(), value.clone()).await {
                        Ok(resp) => {
                            let rev = resp.header.expect("put has a header").revision;
                            acked.lock().unwrap().insert(key, (value, rev));
                        }
                        // The server died under us: stop writing.
                        Err(_) => break,
                    }
                }
            }));
        }
        // The fault injection point: a random moment while writes are in flight.
        let delay = rng.random_range(20..300);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        etcd.kill();
        for w in writers {
            w.await.unwrap();
        }

        etcd.spawn();
        etcd.wait_ready().await;
        let mut client = etcd.client().await;
        let all = client.get_prefix("round").await.unwrap();
        let current = all.header.as_ref().unwrap().revision;
        let acked_now = acked.lock().unwrap().clone();
        let max_acked = acked_now.values().map(|(_, r)| *r).max().unwrap_or(0);
        assert!(
            current >= max_acked && current >= highest_revision_seen,
            "round {round}: revision went back: now {current}, acked up to {max_acked}, seen {highest_revision_seen}"
        );
        highest_revision_seen = current;
        let stored: BTreeMap<String, (String, i64)> = all
            .kvs
            .iter()
            .map(|kv| {
                (
                    String::from_utf8(kv.key.clone()).unwrap(),
                    (
                        String::from_utf8(kv.value.clone()).unwrap(),
                        kv.mod_revision,
                    ),
                )
            })
            .collect();
        for (key, (value, rev)) in &acked_now {
            assert_eq!(
                stored.get(key),
                Some(&(value.clone(), *rev)),
                "round {round}: acknowledged write {key} lost or changed"
            );
        }
        // Unacknowledged writes may or may not have made it, but no two keys share a revision.
        let mut revisions: Vec<i64> = stored.values().map(|(_, r)| *r).collect();
        revisions.sort_unstable();
        revisions.dedup();
        assert_eq!(revisions.len(), stored.len(), "two writes share a revision");
    }
    assert!(
        acked.lock().unwrap().len() > KILLS,
        "too few writes were acknowledged to mean anything"
    );
}
