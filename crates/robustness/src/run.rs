//! One run: a cluster, the clients, the watch and the nemesis for a while, then the faults
//! stop, the cluster heals, a final read fixes the end revision, the watch catches up to it,
//! and the whole history is checked. The history is saved (`history.json`) with the report
//! and the fault log, so a failure can be studied and its seed run again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::RangeRequest;

use crate::checker::{Report, check};
use crate::cluster::{Cluster, MemberOptions, lock};
use crate::history::History;
use crate::nemesis::{self, Fault};
use crate::watcher::{Progress, Target, watch_all, watch_segments};
use crate::workload::{PREFIX, Workload, client};

pub struct RunConfig {
    pub binary: PathBuf,
    pub members: usize,
    pub duration: Duration,
    pub seed: u64,
    pub clients: usize,
    pub keys: usize,
    pub faults: Vec<Fault>,
    /// Watchers opening watches from past revisions while the run goes on.
    pub segment_watchers: usize,
    /// Compact (and now and then defragment) while the run goes on.
    pub compaction: bool,
    /// Simulate power loss: a killed member loses every write it had not synced (our binary
    /// built with failpoints).
    pub power_loss: bool,
    /// The main watch asks for progress notifications (etcd 3.4.23 fails their check: it can
    /// send one ahead of events, etcd issue 15220, fixed in later releases).
    pub progress_requests: bool,
    /// Failpoints set on every member once the cluster is up (`name`, gofail term), until
    /// the member restarts: the deliberately broken variants the checker must flag.
    pub failpoints: Vec<(String, String)>,
    /// Data dirs, logs, the history and the report go here.
    pub dir: PathBuf,
}

pub struct RunResult {
    pub report: Report,
    pub faults: Vec<String>,
    pub history_path: PathBuf,
}

/// How long the healed cluster has to answer, and the watch to catch up.
const SETTLE: Duration = Duration::from_secs(60);

pub async fn run(cfg: &RunConfig) -> Result<RunResult, String> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| format!("{}: {e}", cfg.dir.display()))?;
    let network = cfg
        .faults
        .iter()
        .any(|f| f.needs_network())
        .then(crate::netproxy::Network::default);
    let failpoints = cfg.power_loss
        || !cfg.failpoints.is_empty()
        || cfg.faults.iter().any(|f| f.needs_failpoints());
    let options = MemberOptions {
        failpoints,
        power_loss: cfg.power_loss,
        // Ours (the only binary with failpoints) also keeps just 100 entries after a
        // snapshot (etcd 3.5's flag; 3.4 has 5,000 fixed), so a member 100 entries behind,
        // or a new one, is sent a snapshot: snapshots travel far more often.
        extra_flags: if failpoints {
            vec![
                "--experimental-snapshot-catchup-entries".to_string(),
                "100".to_string(),
            ]
        } else {
            Vec::new()
        },
    };
    let cluster = Cluster::start(
        &cfg.binary,
        cfg.members,
        &cfg.dir,
        network.as_ref(),
        &options,
    )
    .map_err(|e| format!("cannot start {}: {e}", cfg.binary.display()))?;
    if let Err(e) = cluster.wait_healthy(SETTLE).await {
        return Err(format!("{e}\n{}", cluster.log_tails(20)));
    }
    if options.failpoints {
        // Proves the binary has failpoints (a power-loss run on one without would pass
        // without having lost anything), then sets the requested ones.
        for m in &cluster.members {
            let addr = m.failpoint_addr.as_deref().unwrap_or_default();
            crate::failpoint::clear(addr, "probe").await.map_err(|e| {
                format!(
                    "{}'s failpoint control does not answer ({e}): build the binary with \
                     failpoints (cargo build -p etcd --features failpoints)",
                    m.name
                )
            })?;
            for (name, term) in &cfg.failpoints {
                crate::failpoint::set(addr, name, term).await?;
            }
        }
    }
    if let Some(network) = &network {
        network.learn(cluster.member_ids().await?);
    }
    let endpoints = cluster.endpoints();
    let cluster = Arc::new(Mutex::new(cluster));
    let start = Instant::now();
    let deadline = start + cfg.duration;

    let target = Target::default();
    let progress = Progress::default();
    let watcher = tokio::spawn(watch_all(
        endpoints.clone(),
        target.clone(),
        progress.clone(),
        cfg.progress_requests,
    ));
    let segment_watchers: Vec<_> = (0..cfg.segment_watchers)
        .map(|i| {
            tokio::spawn(watch_segments(
                endpoints.clone(),
                progress.clone(),
                cfg.seed.wrapping_mul(7919).wrapping_add(i as u64),
                deadline,
            ))
        })
        .collect();
    let compactor = cfg.compaction.then(|| {
        tokio::spawn(crate::compactor::run(
            endpoints.clone(),
            progress.clone(),
            cfg.seed.wrapping_add(17),
            deadline,
        ))
    });
    let clients: Vec<_> = (0..cfg.clients)
        .map(|i| {
            let workload = Workload {
                client: i,
                endpoints: endpoints.clone(),
                keys: cfg.keys,
                seed: cfg.seed.wrapping_mul(1000).wrapping_add(i as u64),
            };
            tokio::spawn(workload.run(start, deadline))
        })
        .collect();
    let nemesis = tokio::spawn(nemesis::run(
        cluster.clone(),
        network.clone(),
        cfg.faults.clone(),
        cfg.seed,
        start,
        deadline,
    ));

    let mut history = History::default();
    for c in clients {
        history
            .operations
            .extend(c.await.map_err(|e| format!("a client task failed: {e}"))?);
    }
    let mut faults = nemesis
        .await
        .map_err(|e| format!("the nemesis failed: {e}"))?;
    for w in segment_watchers {
        history
            .segments
            .extend(w.await.map_err(|e| format!("a watcher failed: {e}"))?);
    }
    if let Some(compactor) = compactor {
        let (log, revisions) = compactor
            .await
            .map_err(|e| format!("the compactor failed: {e}"))?;
        faults.extend(log);
        history.compactions = revisions;
    }
    {
        let mut c = lock(&cluster);
        c.heal()
            .map_err(|e| format!("cannot restart a member: {e}"))?;
    }
    let healthy = lock(&cluster).endpoints();
    let (final_revision, final_state) = final_read(&healthy).await.map_err(|e| {
        let tails = lock(&cluster).log_tails(30);
        format!("{e}\n{tails}")
    })?;
    history.final_revision = final_revision;
    history.final_state = final_state;
    target.set(final_revision);
    history.watch = match tokio::time::timeout(SETTLE, watcher).await {
        Ok(Ok(watch)) => {
            history.progress = watch.progress;
            watch.responses
        }
        Ok(Err(e)) => return Err(format!("the watch task failed: {e}")),
        // The checker reports what is missing.
        Err(_) => Vec::new(),
    };
    history.operations.sort_by_key(|o| o.invoked_us);

    let report = check(&history);
    let history_path = cfg.dir.join("history.json");
    save(&history_path, &history)?;
    let mut text = format!("{report}\nfaults:\n");
    for f in &faults {
        text.push_str(&format!("  {f}\n"));
    }
    if !report.ok() {
        let tails = lock(&cluster).log_tails(40);
        text.push_str(&tails);
    }
    std::fs::write(cfg.dir.join("report.txt"), text)
        .map_err(|e| format!("cannot save the report: {e}"))?;
    Ok(RunResult {
        report,
        faults,
        history_path,
    })
}

fn save(path: &Path, history: &History) -> Result<(), String> {
    let json = serde_json::to_vec(history).map_err(|e| e.to_string())?;
    std::fs::write(path, json).map_err(|e| format!("cannot save {}: {e}", path.display()))
}

/// A linearizable read of every workload key, from whichever member answers first.
async fn final_read(endpoints: &[String]) -> Result<(i64, Vec<(String, String, i64)>), String> {
    let deadline = Instant::now() + SETTLE;
    let end = etcd_client::prefix_end(PREFIX.as_bytes());
    let mut last_error = String::new();
    for attempt in 0.. {
        if Instant::now() > deadline {
            break;
        }
        let url = &endpoints[attempt % endpoints.len()];
        if let Ok(mut c) = client(url) {
            let read =
                c.kv.range(RangeRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: end.clone(),
                    ..RangeRequest::default()
                })
                .await;
            match read {
                Ok(r) => {
                    let r = r.into_inner();
                    let state = r
                        .kvs
                        .iter()
                        .map(|kv| {
                            (
                                String::from_utf8_lossy(&kv.key).into_owned(),
                                String::from_utf8_lossy(&kv.value).into_owned(),
                                kv.mod_revision,
                            )
                        })
                        .collect();
                    return Ok((r.header.map_or(0, |h| h.revision), state));
                }
                Err(e) => last_error = format!("{url}: {}", e.message()),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "no member answered the final read within {SETTLE:?} (last: {last_error})"
    ))
}
