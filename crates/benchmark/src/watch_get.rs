//! `watch-get`: serializable gets while many watchers catch up from history (unsynced
//! watchers), as etcd's. `--events` puts to `watchkey` make the history; `--watchers`
//! watchers on `--streams` streams (round-robined over the clients) each watch it from the
//! first of those revisions; a separate connection times serializable gets of `abc` in a loop
//! until every watcher has received its `--events` events.

use std::time::Instant;

use etcd_api::etcdserverpb::{
    PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, watch_request::RequestUnion,
};
use etcd_client::{Client, ClientError};
use tokio::sync::mpsc;

use crate::cli::WatchGetArgs;
use crate::report::{Sample, Stats};
use crate::run::BenchError;

const WATCH_KEY: &[u8] = b"watchkey";
const GET_KEY: &[u8] = b"abc";

/// How many watchers stream `stream` of `streams` carries when `watchers` are dealt in turn.
pub fn watchers_on_stream(watchers: usize, streams: usize, stream: usize) -> usize {
    watchers / streams + usize::from(stream < watchers % streams)
}

/// Creates `watchers` watchers from `revision` on one stream and returns once they have
/// received `events` events each.
async fn unsynced_watchers(
    mut client: Client,
    watchers: usize,
    revision: i64,
    events: usize,
) -> Result<(), BenchError> {
    if watchers == 0 {
        return Ok(());
    }
    let (requests, request_rx) = mpsc::channel(1);
    // The creates are queued before the stream opens (see `run::open_watch`).
    let creator = tokio::spawn(async move {
        for _ in 0..watchers {
            let create = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: WATCH_KEY.to_vec(),
                    start_revision: revision,
                    ..Default::default()
                })),
            };
            if requests.send(create).await.is_err() {
                break;
            }
        }
        // Keep the request side open until the stream is done.
        requests
    });
    let mut responses = crate::run::open_watch(&mut client, request_rx)
        .await
        .map_err(ClientError::from)?;
    let expected = watchers * events;
    let mut received = 0;
    while received < expected {
        match responses.message().await.map_err(ClientError::from)? {
            Some(r) => received += r.events.len(),
            None => return Err(BenchError::Usage("watch stream closed".into())),
        }
    }
    creator.abort();
    Ok(())
}

pub async fn watch_get(
    clients: crate::run::Clients,
    mut get_client: Client,
    args: WatchGetArgs,
) -> Result<Stats, BenchError> {
    if args.streams == 0 {
        return Err(BenchError::Usage("--streams must be positive".into()));
    }
    let mut writer = clients[0].clone();
    let mut revision = 0;
    for i in 0..args.events {
        let put = PutRequest {
            key: WATCH_KEY.to_vec(),
            value: i.to_string().into_bytes(),
            ..Default::default()
        };
        let response = writer.kv.put(put).await.map_err(ClientError::from)?;
        if i == 0 {
            revision = response
                .into_inner()
                .header
                .map(|h| h.revision)
                .unwrap_or(0);
        }
    }
    let started = Instant::now();
    let mut streams = Vec::with_capacity(args.streams);
    for s in 0..args.streams {
        let watchers = watchers_on_stream(args.watchers, args.streams, s);
        let client = clients[s % clients.len()].clone();
        streams.push(tokio::spawn(unsynced_watchers(
            client,
            watchers,
            revision,
            args.events,
        )));
    }
    let watching = async {
        for stream in streams {
            stream
                .await
                .map_err(|e| BenchError::Usage(format!("watch failed: {e}")))??;
        }
        Ok::<(), BenchError>(())
    };
    tokio::pin!(watching);
    let mut samples = Vec::new();
    loop {
        let get = RangeRequest {
            key: GET_KEY.to_vec(),
            serializable: true,
            ..Default::default()
        };
        let start_unix_secs = crate::run::unix_secs();
        let start = Instant::now();
        tokio::select! {
            done = &mut watching => {
                done?;
                break;
            }
            result = get_client.kv.range(get) => {
                samples.push(Sample {
                    latency: start.elapsed(),
                    error: result.err().map(|e| e.message().to_string()),
                    tag: 0,
                    start_unix_secs,
                });
            }
        }
    }
    Ok(Stats::new(&samples, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_dealt_over_streams() {
        let counts: Vec<usize> = (0..3).map(|s| watchers_on_stream(10, 3, s)).collect();
        assert_eq!(counts, vec![4, 3, 3]);
        assert_eq!(watchers_on_stream(2, 4, 3), 0);
    }
}
