//! `watch`: etcd's watch benchmark in two phases.
//!
//! 1. Creation: `--streams` watch streams (stream `i` on client `i % clients`) each create
//!    `--watch-per-stream` watchers on keys taken in turn from `--watch-per-stream` watched
//!    keys; a sample is one watcher's create round trip.
//! 2. Events: `--put-total` puts to the watched keys in turn (at `--put-rate`, over the
//!    clients); the run ends when every watcher has received its events. As etcd's, a sample
//!    per event is taken when its response arrives, so what this phase measures is its total
//!    time and events per second.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{
    PutRequest, WatchCreateRequest, WatchRequest, watch_request::RequestUnion,
};
use etcd_client::ClientError;
use tokio::sync::mpsc;

use crate::cli::WatchArgs;
use crate::keys::KeyGen;
use crate::report::{Precision, Sample, Stats};
use crate::run::{self, BenchError, Op, Progress};

/// gRPC (Go) allows 100 streams per connection; etcd warns when there are fewer
/// connections than that needs.
const STREAMS_PER_CONN: usize = 100;
/// Event arrivals queued between the watch streams and the collector.
const EVENTS_QUEUED_MAX: usize = 1024;

fn watch_create(key: Vec<u8>) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            ..Default::default()
        })),
    }
}

/// The watched keys: `count` keys made as `put`'s are.
pub fn watched_keys(args: &WatchArgs) -> Result<Vec<Vec<u8>>, BenchError> {
    let mut keys = KeyGen::new(args.key_size, args.key_space_size, args.sequential_keys)
        .map_err(|e| BenchError::Usage(e.to_string()))?;
    let mut rng = rand::rng();
    Ok((0..args.watch_per_stream)
        .map(|_| keys.next_key(&mut rng))
        .collect())
}

/// Events the puts will produce: put `i` goes to watched key `i % len`, seen by every watcher
/// on that key.
pub fn events_total(watched: &[Vec<u8>], watchers: &HashMap<Vec<u8>, usize>, puts: usize) -> usize {
    if watched.is_empty() {
        return 0;
    }
    (0..puts)
        .map(|i| {
            watchers
                .get(&watched[i % watched.len()])
                .copied()
                .unwrap_or(0)
        })
        .sum()
}

pub async fn watch(
    clients: run::Clients,
    conns: usize,
    args: WatchArgs,
    precision: Precision,
) -> Result<(), BenchError> {
    if args.streams == 0 || args.watch_per_stream == 0 {
        return Err(BenchError::Usage(
            "--streams and --watch-per-stream must be positive".into(),
        ));
    }
    let grpc_conns = clients.len().min(conns);
    let wanted_conns = 1 + args.streams / STREAMS_PER_CONN;
    if grpc_conns < wanted_conns {
        eprintln!(
            "warning: grpc limits {STREAMS_PER_CONN} streams per client connection, have {grpc_conns} but need {wanted_conns}"
        );
    }
    let watched = watched_keys(&args)?;

    // Phase 1: create the watchers, stream by stream in parallel.
    let mut watchers_per_key: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut plans = vec![Vec::with_capacity(args.watch_per_stream); args.streams];
    for i in 0..args.streams * args.watch_per_stream {
        let key = watched[i % watched.len()].clone();
        *watchers_per_key.entry(key.clone()).or_insert(0) += 1;
        plans[i % args.streams].push(key);
    }
    let progress = std::sync::Arc::new(Progress::start(args.streams * args.watch_per_stream));
    let started = Instant::now();
    let mut creators = Vec::with_capacity(args.streams);
    for (i, plan) in plans.into_iter().enumerate() {
        let mut client = clients[i % clients.len()].clone();
        let progress = progress.clone();
        creators.push(tokio::spawn(async move {
            let (requests, request_rx) = mpsc::channel(1);
            // The first create is queued before the stream opens (see `run::open_watch`).
            let mut samples = Vec::with_capacity(plan.len());
            let first_start = Instant::now();
            if let Some(key) = plan.first() {
                let _ = requests.send(watch_create(key.clone())).await;
            }
            let mut responses = run::open_watch(&mut client, request_rx)
                .await
                .map_err(ClientError::from)?;
            for (i, key) in plan.into_iter().enumerate() {
                let start = if i == 0 { first_start } else { Instant::now() };
                if i > 0 && requests.send(watch_create(key)).await.is_err() {
                    return Err(BenchError::Usage("watch stream closed".into()));
                }
                loop {
                    match responses.message().await.map_err(ClientError::from)? {
                        Some(r) if r.created => break,
                        Some(_) => continue,
                        None => return Err(BenchError::Usage("watch stream closed".into())),
                    }
                }
                samples.push(Sample {
                    latency: start.elapsed(),
                    error: None,
                    tag: 0,
                    start_unix_secs: 0,
                });
                progress.add(1);
            }
            Ok::<_, BenchError>((samples, requests, responses))
        }));
    }
    let mut samples = Vec::new();
    let mut streams = Vec::with_capacity(args.streams);
    for creator in creators {
        let result = creator
            .await
            .map_err(|e| BenchError::Usage(format!("watch creation failed: {e}")))?;
        let (s, requests, responses) = result?;
        samples.extend(s);
        streams.push((requests, responses));
    }
    let creation = Stats::new(&samples, started.elapsed());
    if let Ok(progress) = std::sync::Arc::try_unwrap(progress) {
        progress.finish();
    }
    print!(
        "Watch creation summary:\n{}",
        creation.render(precision, false)
    );

    // Phase 2: put and count events.
    let total_events = events_total(&watched, &watchers_per_key, args.put_total);
    let (events, mut event_rx) = mpsc::channel::<Instant>(EVENTS_QUEUED_MAX);
    let mut readers = Vec::with_capacity(streams.len());
    for (requests, mut responses) in streams {
        let events = events.clone();
        readers.push(tokio::spawn(async move {
            let _requests = requests;
            while let Ok(Some(response)) = responses.message().await {
                let arrived = Instant::now();
                for _ in &response.events {
                    if events.send(arrived).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    drop(events);
    let started = Instant::now();
    let put_total = args.put_total;
    let keys = watched.clone();
    let mut puts = tokio::spawn(run::run(clients, put_total, args.put_rate, move |i| {
        Op::Put(PutRequest {
            key: keys[i % keys.len()].clone(),
            value: b"data".to_vec(),
            ..Default::default()
        })
    }));
    let mut samples = Vec::with_capacity(total_events);
    let mut puts_done = false;
    let mut failure = None;
    while samples.len() < total_events && failure.is_none() {
        tokio::select! {
            arrived = event_rx.recv() => {
                let Some(arrived) = arrived else { break };
                samples.push(Sample {
                    latency: arrived.elapsed().min(Duration::from_secs(3600)),
                    error: None,
                    tag: 0,
                    start_unix_secs: 0,
                });
            }
            // A failed put means some events never come: stop rather than wait forever.
            done = &mut puts, if !puts_done => {
                puts_done = true;
                failure = match done {
                    Err(e) => Some(format!("puts failed: {e}")),
                    Ok(stats) => stats.errors.keys().next().map(|m| format!("put failed: {m}")),
                };
            }
        }
    }
    let elapsed = started.elapsed();
    for reader in readers {
        reader.abort();
    }
    if !puts_done {
        puts.abort();
    }
    if let Some(failure) = failure {
        return Err(BenchError::Usage(failure));
    }
    let received = Stats::new(&samples, elapsed);
    print!(
        "Watch events received summary:\n{}",
        received.render(precision, false)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_puts_over_watched_keys() {
        let watched = vec![b"a".to_vec(), b"b".to_vec()];
        let watchers = HashMap::from([(b"a".to_vec(), 3), (b"b".to_vec(), 1)]);
        // Puts go a, b, a: 3 + 1 + 3 events.
        assert_eq!(events_total(&watched, &watchers, 3), 7);
        assert_eq!(events_total(&[], &watchers, 3), 0);
    }
}
