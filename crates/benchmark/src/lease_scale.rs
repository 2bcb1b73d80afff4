//! `lease-scale` (ours): many leases.
//!
//! `--mode keepalive`: `--leases` leases are granted over the clients, then each client keeps
//! its share alive over one LeaseKeepAlive stream for `--duration-secs`, renewing its leases
//! in turn with a bounded number of renewals in flight. Reported: the grant rate, keep-alives
//! answered per second, and any lease the server no longer knew (TTL -1).
//!
//! `--mode expire`: the leases are granted with `--ttl`, a key attached to each, and all
//! renewed at once so they expire together. Puts run at `--put-rate` from before the expiry
//! until every attached key is gone; reported second by second: the puts' latency and the
//! keys left. What it shows is whether revoking many leases at once stalls the writes beside
//! it, and how long the server takes to revoke them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etcd_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest};
use etcd_client::{Client, ClientError};
use tokio::sync::{Semaphore, mpsc};

use crate::cli::LeaseScaleArgs;
use crate::report::{Precision, Sample, Stats};
use crate::run::{BenchError, Clients, Limiter};

/// Keep-alives in flight on one stream.
const RENEWALS_IN_FLIGHT_MAX: usize = 64;
/// Grants (and attaching puts) in flight per client.
const GRANTS_IN_FLIGHT_MAX: usize = 16;
/// Puts in flight at once beside an expiry.
const PUTS_IN_FLIGHT_MAX: usize = 256;
/// How long after the TTL the expiry may take before the run gives up on it.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(300);
/// Where the keys attached to the leases live.
const LEASED_PREFIX: &str = "lease-scale/";

fn leased_key(i: usize) -> Vec<u8> {
    format!("{LEASED_PREFIX}{i:08}").into_bytes()
}

/// Which leases client `c` of `clients` owns: every `clients`-th, from `c`.
pub fn share(leases: usize, clients: usize, c: usize) -> impl Iterator<Item = usize> {
    (c..leases).step_by(clients.max(1))
}

/// Grants `--leases` leases over the clients; with `attach`, puts a key on each. Returns the
/// lease IDs, indexed as granted.
async fn grant_all(
    clients: &Clients,
    leases: usize,
    ttl: i64,
    attach: bool,
) -> Result<Vec<i64>, BenchError> {
    let mut tasks = Vec::with_capacity(clients.len());
    for (c, client) in clients.iter().enumerate() {
        let client = client.clone();
        let mine: Vec<usize> = share(leases, clients.len(), c).collect();
        tasks.push(tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(GRANTS_IN_FLIGHT_MAX));
            let mut grants = Vec::with_capacity(mine.len());
            for i in mine {
                let permit = in_flight.clone().acquire_owned().await;
                let mut client = client.clone();
                grants.push(tokio::spawn(async move {
                    let _permit = permit;
                    let id = client
                        .lease
                        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                        .await?
                        .into_inner()
                        .id;
                    if attach {
                        client
                            .kv
                            .put(PutRequest {
                                key: leased_key(i),
                                value: b"leased".to_vec(),
                                lease: id,
                                ..Default::default()
                            })
                            .await?;
                    }
                    Ok::<_, tonic::Status>((i, id))
                }));
            }
            let mut ids = Vec::with_capacity(grants.len());
            for grant in grants {
                match grant.await {
                    Ok(Ok(granted)) => ids.push(granted),
                    Ok(Err(e)) => return Err(BenchError::Client(ClientError::from(e))),
                    Err(e) => return Err(BenchError::Usage(format!("grant task failed: {e}"))),
                }
            }
            Ok(ids)
        }));
    }
    let mut ids = vec![0; leases];
    for task in tasks {
        let granted = task
            .await
            .map_err(|e| BenchError::Usage(format!("grant task failed: {e}")))??;
        for (i, id) in granted {
            ids[i] = id;
        }
    }
    Ok(ids)
}

/// What one keep-alive stream did.
#[derive(Default)]
struct Renewals {
    answered: u64,
    /// Answers with TTL -1: the server no longer knew the lease.
    unknown: u64,
    latencies: Vec<Duration>,
}

/// Renews `ids` in turn over one stream until `until`, or just once each when `once`.
async fn keep_alive(
    mut client: Client,
    ids: Vec<i64>,
    until: Instant,
    once: bool,
) -> Result<Renewals, BenchError> {
    let mut renewals = Renewals::default();
    if ids.is_empty() {
        return Ok(renewals);
    }
    let (requests, request_rx) = mpsc::channel(RENEWALS_IN_FLIGHT_MAX);
    let window = Arc::new(Semaphore::new(RENEWALS_IN_FLIGHT_MAX));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let mut sender = {
        let window = window.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            for id in ids.iter().cycle() {
                if (once && sent == ids.len() as u64) || (!once && Instant::now() >= until) {
                    break;
                }
                let Ok(permit) = window.acquire().await else {
                    break;
                };
                permit.forget();
                if sent_tx.send(Instant::now()).is_err()
                    || requests
                        .send(LeaseKeepAliveRequest { id: *id })
                        .await
                        .is_err()
                {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    // Opened once the sender runs (see `run::open_keep_alive`).
    let mut answers = crate::run::open_keep_alive(&mut client, request_rx)
        .await
        .map_err(ClientError::from)?;
    let mut sent_total = None;
    loop {
        if let Some(total) = sent_total
            && renewals.answered >= total
        {
            break;
        }
        tokio::select! {
            sent = &mut sender, if sent_total.is_none() => {
                sent_total = Some(sent.unwrap_or(0));
            }
            answer = answers.message() => {
                let Some(answer) = answer.map_err(ClientError::from)? else { break };
                let sent_at = sent_rx.recv().await.unwrap_or_else(Instant::now);
                renewals.latencies.push(sent_at.elapsed());
                renewals.answered += 1;
                if answer.ttl <= 0 {
                    renewals.unknown += 1;
                }
                window.add_permits(1);
            }
        }
    }
    Ok(renewals)
}

fn samples(latencies: Vec<Duration>) -> Vec<Sample> {
    latencies
        .into_iter()
        .map(|latency| Sample {
            latency,
            error: None,
            tag: 0,
            start_unix_secs: 0,
        })
        .collect()
}

/// Renews `ids` over one stream per client (client `c` the leases `share` gives it).
async fn keep_alive_all(
    clients: &Clients,
    ids: &[i64],
    until: Instant,
    once: bool,
) -> Result<Renewals, BenchError> {
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(c, client)| {
            let mine = share(ids.len(), clients.len(), c).map(|i| ids[i]).collect();
            tokio::spawn(keep_alive(client.clone(), mine, until, once))
        })
        .collect();
    let mut all = Renewals::default();
    for task in tasks {
        let r = task
            .await
            .map_err(|e| BenchError::Usage(format!("keep-alive task failed: {e}")))??;
        all.answered += r.answered;
        all.unknown += r.unknown;
        all.latencies.extend(r.latencies);
    }
    Ok(all)
}

pub async fn lease_scale(
    clients: Clients,
    put_client: Client,
    args: LeaseScaleArgs,
    precision: Precision,
) -> Result<(), BenchError> {
    let expire = match args.mode.as_str() {
        "keepalive" => false,
        "expire" => true,
        other => {
            return Err(BenchError::Usage(format!(
                "unknown --mode {other:?} (keepalive or expire)"
            )));
        }
    };
    if args.leases == 0 || args.ttl <= 0 {
        return Err(BenchError::Usage(
            "--leases and --ttl must be positive".into(),
        ));
    }
    let started = Instant::now();
    let ids = grant_all(&clients, args.leases, args.ttl, expire).await?;
    let took = started.elapsed();
    println!(
        "Granted {} leases{} in {:.3} s ({:.0}/s)",
        args.leases,
        if expire { " with a key each" } else { "" },
        took.as_secs_f64(),
        args.leases as f64 / took.as_secs_f64().max(1e-9)
    );
    if expire {
        return expire_beside_puts(clients, put_client, &ids, args, precision).await;
    }

    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration_secs);
    let renewals = keep_alive_all(&clients, &ids, until, false).await?;
    let elapsed = started.elapsed();
    println!(
        "Keep-alives: {} answered in {:.3} s ({:.0}/s) over {} streams, {} for leases the server did not know",
        renewals.answered,
        elapsed.as_secs_f64(),
        renewals.answered as f64 / elapsed.as_secs_f64().max(1e-9),
        clients.len(),
        renewals.unknown
    );
    print!(
        "Keep-alive summary:\n{}",
        Stats::new(&samples(renewals.latencies), elapsed).render(precision, false)
    );
    if renewals.unknown > 0 {
        return Err(BenchError::Usage(format!(
            "{} keep-alives found their lease gone",
            renewals.unknown
        )));
    }
    Ok(())
}

/// One second of puts beside an expiry.
#[derive(Default)]
struct Second {
    latencies: Vec<Duration>,
    failed: u64,
}

/// How many attached keys are left.
async fn leased_keys_left(client: &mut Client) -> Result<i64, BenchError> {
    let mut end = LEASED_PREFIX.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    Ok(client
        .kv
        .range(RangeRequest {
            key: LEASED_PREFIX.as_bytes().to_vec(),
            range_end: end,
            count_only: true,
            serializable: true,
            ..Default::default()
        })
        .await
        .map_err(ClientError::from)?
        .into_inner()
        .count)
}

async fn expire_beside_puts(
    clients: Clients,
    mut put_client: Client,
    ids: &[i64],
    args: LeaseScaleArgs,
    precision: Precision,
) -> Result<(), BenchError> {
    // Renew all at once, so they expire together one TTL from now.
    let renewed_at = Instant::now();
    let renewals = keep_alive_all(&clients, ids, renewed_at, true).await?;
    let due = renewed_at + Duration::from_secs(args.ttl as u64);
    println!(
        "Renewed all {} in {:.3} s; they expire in {} s",
        renewals.answered,
        renewed_at.elapsed().as_secs_f64(),
        args.ttl
    );

    let start = Instant::now();
    let seconds: Arc<std::sync::Mutex<Vec<Second>>> = Arc::default();
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let in_flight = Arc::new(Semaphore::new(PUTS_IN_FLIGHT_MAX));
    let load = {
        let seconds = seconds.clone();
        let stop = stop.clone();
        let failures = failures.clone();
        let in_flight = in_flight.clone();
        let kv = put_client.kv.clone();
        let rate = args.put_rate;
        tokio::spawn(async move {
            let limiter = Limiter::new(rate);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                limiter.wait().await;
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let mut kv = kv.clone();
                let seconds = seconds.clone();
                let failures = failures.clone();
                let request = PutRequest {
                    key: format!("lease-scale-put/{:04}", i % 1000).into_bytes(),
                    value: vec![b'p'; 256],
                    ..Default::default()
                };
                i += 1;
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let ok = kv.put(request).await.is_ok();
                    let second = sent.duration_since(start).as_secs() as usize;
                    let mut seconds = seconds.lock().unwrap_or_else(|e| e.into_inner());
                    if seconds.len() <= second {
                        seconds.resize_with(second + 1, Second::default);
                    }
                    if ok {
                        seconds[second].latencies.push(sent.elapsed());
                    } else {
                        seconds[second].failed += 1;
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(permit);
                });
            }
        })
    };

    // Watch the attached keys go, once a second.
    let mut left_per_second = Vec::new();
    let mut first_gone = None;
    let mut all_gone = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let left = leased_keys_left(&mut put_client).await?;
        left_per_second.push(left);
        let now = Instant::now();
        if left < ids.len() as i64 && first_gone.is_none() {
            first_gone = Some(now);
        }
        if left == 0 && all_gone.is_none() {
            all_gone = Some(now);
        }
        if let Some(gone) = all_gone
            && now >= gone + Duration::from_secs(2)
        {
            break;
        }
        if now > due + EXPIRY_TIMEOUT {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    // The last puts' answers: every permit back.
    let _ = in_flight.acquire_many(PUTS_IN_FLIGHT_MAX as u32).await;

    let seconds = std::mem::take(&mut *seconds.lock().unwrap_or_else(|e| e.into_inner()));
    println!("second  puts  failed  p50 ms  p99 ms  max ms  leased keys left");
    let secs = |t: Instant| t.saturating_duration_since(start).as_secs_f64();
    let (mut before, mut during) = (Vec::new(), Vec::new());
    for (s, second) in seconds.into_iter().enumerate() {
        let mut l = second.latencies.clone();
        l.sort_unstable();
        let at = |q: f64| {
            l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "{s:>6}  {:>4}  {:>6}  {:>6.1}  {:>6.1}  {:>6.1}  {}",
            l.len(),
            second.failed,
            at(0.5),
            at(0.99),
            l.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            left_per_second
                .get(s)
                .map_or(String::new(), |n| n.to_string())
        );
        // Before: seconds that end before the TTL is due; during: from the second it falls
        // due in to the one the last key went in.
        let t = s as f64;
        if t + 1.0 <= secs(due) {
            before.extend(second.latencies);
        } else if all_gone.is_none_or(|last| t <= secs(last)) {
            during.extend(second.latencies);
        }
    }
    match (first_gone, all_gone) {
        (Some(first), Some(last)) => println!(
            "Expiry: the first key went {:.1} s after the TTL, the last {:.1} s after it ({:.1} s to revoke {})",
            first.saturating_duration_since(due).as_secs_f64(),
            last.saturating_duration_since(due).as_secs_f64(),
            last.saturating_duration_since(first).as_secs_f64(),
            ids.len()
        ),
        _ => println!("Expiry: not finished within {EXPIRY_TIMEOUT:?} of the TTL"),
    }
    let elapsed = start.elapsed();
    print!(
        "Puts before the expiry summary:\n{}",
        Stats::new(&samples(before), elapsed).render(precision, false)
    );
    print!(
        "Puts during the expiry summary:\n{}",
        Stats::new(&samples(during), elapsed).render(precision, false)
    );
    let failed = failures.load(Ordering::Relaxed);
    if all_gone.is_none() || failed > 0 {
        return Err(BenchError::Usage(format!(
            "the expiry did not finish, or {failed} puts failed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_lease_once() {
        let mut all: Vec<usize> = (0..3).flat_map(|c| share(10, 3, c)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(share(2, 5, 4).count(), 0, "more clients than leases");
    }
}
