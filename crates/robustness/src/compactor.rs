//! Compaction during the run, as operators run it: every few hundred milliseconds, to a
//! revision a few hundred behind what the main watch has received (so the watch never needs
//! what was compacted), physical or not at random; and after about one compaction in five, a
//! defragmentation of a random member.

use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{CompactionRequest, DefragmentRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::watcher::Progress;
use crate::workload::client;

/// How far behind the main watch compaction stays.
const MARGIN: i64 = 300;

/// Compacts until `deadline`; returns each compaction and its outcome, and the revisions
/// compacted at.
pub async fn run(
    endpoints: Vec<String>,
    progress: Progress,
    seed: u64,
    deadline: Instant,
) -> (Vec<String>, Vec<i64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut done = Vec::new();
    let mut revisions = Vec::new();
    let mut compacted = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..800))).await;
        let revision = progress.get() - MARGIN;
        if revision <= compacted {
            continue;
        }
        let member = rng.random_range(0..endpoints.len());
        let Ok(mut c) = client(&endpoints[member]) else {
            continue;
        };
        if rng.random_ratio(1, 5) {
            let outcome = c.maintenance.defragment(DefragmentRequest {}).await;
            done.push(match outcome {
                Ok(_) => format!("defragmented m{member}"),
                Err(e) => format!("defragmentation of m{member}: {}", e.message()),
            });
        }
        let physical = rng.random_bool(0.5);
        let outcome = c.kv.compact(CompactionRequest { revision, physical }).await;
        match outcome {
            Ok(_) => {
                compacted = revision;
                revisions.push(revision);
                done.push(format!(
                    "compacted at {revision} on m{member} (physical {physical})"
                ));
            }
            Err(e) => {
                // It may have been applied all the same (a timeout): the checker allows for it.
                revisions.push(revision);
                done.push(format!(
                    "compaction at {revision} on m{member}: {}",
                    e.message()
                ));
            }
        }
    }
    (done, revisions)
}
