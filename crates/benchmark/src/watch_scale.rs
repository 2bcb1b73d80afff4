//! `watch-scale` (ours): event delivery to many watchers.
//!
//! `--watchers` watchers are created over `--streams` watch streams (stream `i` on client
//! `i % clients`, so on that client's connection), spread over `--watched-keys` keys. Then
//! `--put-total` puts go to the watched keys in turn, from a connection of their own, at
//! `--put-rate`. A put's value carries the time it was sent, so each event's delivery latency
//! is measured where it arrives: from the put leaving the client to the event arriving, the
//! whole path a watcher waits on. The run ends when every watcher has every event it should
//! (or `--drain-timeout` after the last put, reporting what is missing).
//!
//! With `--range-clients`, that many ranges are kept in flight on the watchers' own
//! connections while the puts run: etcd 15402, where large range answers on a connection
//! delayed the watch events sharing it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{
    PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, watch_request::RequestUnion,
};
use etcd_client::{Client, ClientError};
use tokio::sync::{Semaphore, mpsc};

use crate::cli::WatchScaleArgs;
use crate::report::{Precision, Sample, Stats};
use crate::run::{BenchError, Limiter, unix_secs};

/// Create requests queued ahead of a stream's sender.
const CREATES_QUEUED_MAX: usize = 64;
/// Puts in flight at once: enough to hold the rate when the server is slow to answer.
const PUTS_IN_FLIGHT_MAX: usize = 256;
/// How long a stream may take to confirm all its watchers.
const CREATE_TIMEOUT: Duration = Duration::from_secs(300);

/// The watched keys, named so they sort together and apart from anything else.
pub fn watched_key(i: usize) -> Vec<u8> {
    format!("watch-scale/{i:08}").into_bytes()
}

/// Which keys each stream watches: watcher `w` is on stream `w % streams` and key
/// `w % keys`.
pub fn plan(watchers: usize, streams: usize, keys: usize) -> Vec<Vec<usize>> {
    let mut plans = vec![Vec::new(); streams];
    for w in 0..watchers {
        plans[w % streams].push(w % keys);
    }
    plans
}

/// The events a stream should receive: put `p` goes to key `p % keys`, seen once by each of
/// the stream's watchers on that key.
pub fn expected_events(plan: &[usize], keys: usize, puts: usize) -> usize {
    let mut per_key: HashMap<usize, usize> = HashMap::new();
    for &k in plan {
        *per_key.entry(k).or_insert(0) += 1;
    }
    (0..puts)
        .map(|p| per_key.get(&(p % keys)).copied().unwrap_or(0))
        .sum()
}

/// A put's value: the nanoseconds since `base` it was sent at, then padding.
pub fn stamped_value(sent_nanos: u64, size: usize) -> Vec<u8> {
    let mut value = sent_nanos.to_le_bytes().to_vec();
    value.resize(size.max(8), b'v');
    value
}

/// The send time a value carries, if it is one of ours.
pub fn sent_nanos(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(value.get(..8)?.try_into().ok()?))
}

fn create(key: Vec<u8>) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            ..Default::default()
        })),
    }
}

/// One stream: creates its watchers (all sent at once, then confirmed), reports that on
/// `created`, then measures its events until it has `expected` of them.
async fn run_stream(
    mut client: Client,
    keys: Vec<usize>,
    expected: usize,
    base: Instant,
    created: mpsc::Sender<Result<(), BenchError>>,
) -> Result<Vec<Duration>, BenchError> {
    let (requests, request_rx) = mpsc::channel(CREATES_QUEUED_MAX);
    let wanted = keys.len();
    // The creates are queued before the stream opens (see `run::open_watch`).
    let sender = tokio::spawn(async move {
        for k in keys {
            if requests.send(create(watched_key(k))).await.is_err() {
                return None;
            }
        }
        // The request side stays open for as long as the stream runs.
        Some(requests)
    });
    let mut responses = crate::run::open_watch(&mut client, request_rx)
        .await
        .map_err(ClientError::from)?;
    let mut confirmed = 0;
    let confirm = async {
        while confirmed < wanted {
            match responses.message().await.map_err(ClientError::from)? {
                Some(r) if r.created => confirmed += 1,
                Some(r) if r.canceled => {
                    return Err(BenchError::Usage(format!(
                        "a watch was refused: {}",
                        r.cancel_reason
                    )));
                }
                Some(_) => {}
                None => return Err(BenchError::Usage("watch stream closed".into())),
            }
        }
        Ok(())
    };
    let outcome = match tokio::time::timeout(CREATE_TIMEOUT, confirm).await {
        Ok(outcome) => outcome,
        Err(_) => Err(BenchError::Usage(format!(
            "{confirmed} of {wanted} watchers created in {CREATE_TIMEOUT:?}"
        ))),
    };
    let failed = outcome.is_err();
    let _ = created.send(outcome).await;
    drop(created);
    if failed {
        return Ok(Vec::new());
    }
    let _requests = sender.await.ok().flatten();
    let mut latencies = Vec::with_capacity(expected);
    while latencies.len() < expected {
        let Some(response) = responses.message().await.map_err(ClientError::from)? else {
            break;
        };
        let arrived = base.elapsed();
        for event in &response.events {
            let sent = event
                .kv
                .as_ref()
                .and_then(|kv| sent_nanos(&kv.value))
                .unwrap_or(0);
            latencies.push(arrived.saturating_sub(Duration::from_nanos(sent)));
        }
    }
    Ok(latencies)
}

/// Keeps one range in flight on `client` until `stop`; returns the ranges done and the bytes
/// of their answers' values.
async fn range_load(
    mut client: Client,
    request: RangeRequest,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let (mut done, mut bytes) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        match client.kv.range(request.clone()).await {
            Ok(answer) => {
                done += 1;
                bytes += answer
                    .into_inner()
                    .kvs
                    .iter()
                    .map(|kv| (kv.key.len() + kv.value.len()) as u64)
                    .sum::<u64>();
            }
            Err(e) => {
                eprintln!("range failed: {}", e.message());
                break;
            }
        }
    }
    (done, bytes)
}

pub async fn watch_scale(
    clients: crate::run::Clients,
    put_client: Client,
    args: WatchScaleArgs,
    precision: Precision,
) -> Result<(), BenchError> {
    if args.watchers == 0 || args.streams == 0 || args.watched_keys == 0 {
        return Err(BenchError::Usage(
            "--watchers, --streams and --watched-keys must be positive".into(),
        ));
    }
    if args.range_clients > 0 && args.range_key.is_empty() {
        return Err(BenchError::Usage(
            "--range-clients needs --range-key".into(),
        ));
    }
    let base = Instant::now();
    let plans = plan(args.watchers, args.streams, args.watched_keys);

    // Phase 1: every stream creates its watchers at once.
    let started = Instant::now();
    let (created_tx, mut created_rx) = mpsc::channel(args.streams);
    let mut streams = Vec::with_capacity(args.streams);
    for (i, keys) in plans.into_iter().enumerate() {
        let expected = expected_events(&keys, args.watched_keys, args.put_total);
        let client = clients[i % clients.len()].clone();
        streams.push((
            expected,
            tokio::spawn(run_stream(client, keys, expected, base, created_tx.clone())),
        ));
    }
    drop(created_tx);
    while let Some(outcome) = created_rx.recv().await {
        outcome?;
    }
    let creation = started.elapsed();
    println!(
        "Watch creation: {} watchers on {} keys over {} streams in {:.3} s ({:.0} watchers/s)",
        args.watchers,
        args.watched_keys,
        args.streams,
        creation.as_secs_f64(),
        args.watchers as f64 / creation.as_secs_f64().max(1e-9)
    );

    // Phase 2: ranges on the watchers' connections, if asked, and the puts.
    let stop_ranges = Arc::new(AtomicBool::new(false));
    let ranges: Vec<_> = (0..args.range_clients)
        .map(|i| {
            let request = RangeRequest {
                key: args.range_key.as_bytes().to_vec(),
                range_end: if args.range_from_key {
                    vec![0]
                } else {
                    Vec::new()
                },
                ..Default::default()
            };
            tokio::spawn(range_load(
                clients[i % clients.len()].clone(),
                request,
                stop_ranges.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let limiter = Limiter::new(args.put_rate);
    let in_flight = Arc::new(Semaphore::new(PUTS_IN_FLIGHT_MAX));
    let put_failures = Arc::new(AtomicU64::new(0));
    let mut puts = Vec::with_capacity(args.put_total);
    for p in 0..args.put_total {
        limiter.wait().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let request = PutRequest {
            key: watched_key(p % args.watched_keys),
            value: stamped_value(base.elapsed().as_nanos() as u64, args.val_size),
            ..Default::default()
        };
        let mut kv = put_client.kv.clone();
        let failures = put_failures.clone();
        puts.push(tokio::spawn(async move {
            if let Err(e) = kv.put(request).await {
                eprintln!("put failed: {}", e.message());
                failures.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        }));
    }
    for put in puts {
        let _ = put.await;
    }
    let puts_took = started.elapsed();

    // Phase 3: wait for every stream's events, up to the drain timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.drain_timeout_secs);
    let expected_total: usize = streams.iter().map(|(e, _)| e).sum();
    let mut latencies = Vec::with_capacity(expected_total);
    let mut incomplete = 0;
    for (expected, stream) in streams {
        match tokio::time::timeout_at(deadline, stream).await {
            Ok(Ok(Ok(l))) => {
                if l.len() < expected {
                    incomplete += 1;
                }
                latencies.extend(l);
            }
            Ok(Ok(Err(e))) => {
                eprintln!("watch stream failed: {e}");
                incomplete += 1;
            }
            Ok(Err(e)) => {
                eprintln!("watch stream task failed: {e}");
                incomplete += 1;
            }
            Err(_) => incomplete += 1,
        }
    }
    let elapsed = started.elapsed();
    stop_ranges.store(true, Ordering::Relaxed);
    let (mut ranges_done, mut range_bytes) = (0, 0);
    for range in ranges {
        if let Ok((done, bytes)) = range.await {
            ranges_done += done;
            range_bytes += bytes;
        }
    }

    println!(
        "Puts: {} in {:.3} s, {} failed",
        args.put_total,
        puts_took.as_secs_f64(),
        put_failures.load(Ordering::Relaxed)
    );
    if args.range_clients > 0 {
        println!(
            "Ranges beside them: {ranges_done} ({:.1} MiB of answers) over {} clients",
            range_bytes as f64 / 1048576.0,
            args.range_clients
        );
    }
    println!(
        "Events: {} of {expected_total} received in {:.3} s ({:.0} events/s){}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        if incomplete > 0 {
            format!(", {incomplete} streams incomplete")
        } else {
            String::new()
        }
    );
    let now = unix_secs();
    let samples: Vec<Sample> = latencies
        .into_iter()
        .map(|latency| Sample {
            latency,
            error: None,
            tag: 0,
            start_unix_secs: now,
        })
        .collect();
    print!(
        "Event delivery (put sent to event received) summary:\n{}",
        Stats::new(&samples, elapsed).render(precision, false)
    );
    if incomplete > 0 {
        return Err(BenchError::Usage(format!(
            "{incomplete} watch streams did not receive all their events"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_spreads_watchers_over_streams_and_keys() {
        let plans = plan(6, 2, 3);
        assert_eq!(plans, vec![vec![0, 2, 1], vec![1, 0, 2]]);
        // Puts go to keys 0, 1, 2, 0: stream 0 watches each key once.
        assert_eq!(expected_events(&plans[0], 3, 4), 4);
        // All on one key: every put is seen by every watcher of the stream.
        assert_eq!(expected_events(&plan(10, 2, 1)[0], 1, 7), 35);
    }

    #[test]
    fn values_carry_their_send_time() {
        let v = stamped_value(123_456_789, 32);
        assert_eq!(v.len(), 32);
        assert_eq!(sent_nanos(&v), Some(123_456_789));
        assert_eq!(stamped_value(1, 2).len(), 8, "never shorter than the stamp");
        assert_eq!(sent_nanos(b"short"), None);
    }
}
