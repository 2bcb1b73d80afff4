//! `watch-latency`: one watcher per client on one random key; a separate connection puts to
//! that key `--put-total` times at `--put-rate`, and each put yields one sample per watcher.
//!
//! As etcd's, a sample is the time from the put's response to the watcher receiving the event
//! (zero when the event arrived first), so it measures how far event delivery lags the
//! acknowledgement, not the put itself.

use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{
    PutRequest, WatchCreateRequest, WatchRequest, watch_request::RequestUnion,
};
use etcd_client::Client;
use tokio::sync::mpsc;

use crate::keys::random_bytes;
use crate::report::{Sample, Stats};
use crate::run::{BenchError, Limiter, Progress};

/// Events a watcher may have received before the put loop takes them: one put at a time is in
/// flight, so a small bound never blocks a watcher for long.
const WATCH_EVENTS_QUEUED_MAX: usize = 16;

/// Opens a watch on `key` and returns a receiver of the arrival time of each response that
/// carries events. The watcher stops when the receiver is dropped.
async fn open_watcher(
    client: &mut Client,
    key: Vec<u8>,
) -> Result<mpsc::Receiver<Instant>, BenchError> {
    let (requests, request_rx) = mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            ..Default::default()
        })),
    };
    // The receiver is alive: it is moved into the stream below.
    let _ = requests.send(create).await;
    let mut responses = crate::run::open_watch(client, request_rx)
        .await
        .map_err(etcd_client::ClientError::from)?;
    // Wait for the watch to be created so no put is missed.
    loop {
        match responses
            .message()
            .await
            .map_err(etcd_client::ClientError::from)?
        {
            Some(r) if r.created => break,
            Some(_) => continue,
            None => {
                return Err(BenchError::Usage(
                    "watch stream closed before created".into(),
                ));
            }
        }
    }
    let (arrivals, arrival_rx) = mpsc::channel(WATCH_EVENTS_QUEUED_MAX);
    tokio::spawn(async move {
        // Keep the request side open for as long as the watch runs.
        let _requests = requests;
        while let Ok(Some(response)) = responses.message().await {
            if response.events.is_empty() {
                continue;
            }
            if arrivals.send(Instant::now()).await.is_err() {
                break;
            }
        }
    });
    Ok(arrival_rx)
}

pub async fn watch_latency(
    mut clients: crate::run::Clients,
    mut put_client: Client,
    put_total: usize,
    put_rate: u64,
    key_size: usize,
    val_size: usize,
) -> Result<Stats, BenchError> {
    let mut rng = rand::rng();
    let key = random_bytes(key_size, &mut rng);
    let value = random_bytes(val_size, &mut rng);
    let mut watchers = Vec::with_capacity(clients.len());
    for client in clients.iter_mut() {
        watchers.push(open_watcher(client, key.clone()).await?);
    }
    let limiter = Limiter::new(put_rate);
    let mut samples = Vec::with_capacity(put_total * watchers.len());
    let progress = Progress::start(put_total * watchers.len());
    let started = Instant::now();
    for _ in 0..put_total {
        limiter.wait().await;
        let put = PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        };
        put_client
            .kv
            .put(put)
            .await
            .map_err(etcd_client::ClientError::from)?;
        let acknowledged = Instant::now();
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for watcher in &mut watchers {
            let (latency, error) = match watcher.recv().await {
                Some(arrival) => (arrival.saturating_duration_since(acknowledged), None),
                None => (Duration::ZERO, Some("watch stream closed".to_string())),
            };
            samples.push(Sample {
                latency,
                error,
                tag: 0,
                start_unix_secs: unix_secs,
            });
            progress.add(1);
        }
    }
    progress.finish();
    Ok(Stats::new(&samples, started.elapsed()))
}
