//! The faults: a member killed with SIGKILL and restarted on its data dir, every member killed
//! at once, a member paused with SIGSTOP (its sockets open, its timers frozen) and resumed, a
//! member cut off from its peers both ways, and a member that hears nothing from its peers
//! while they still hear it (the last two through [`crate::netproxy`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::Cluster;
use crate::netproxy::Network;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    KillOne,
    KillAll,
    PauseOne,
    Partition,
    OneWay,
}

impl Fault {
    /// Whether the fault needs peer traffic to go through proxies.
    pub fn needs_network(self) -> bool {
        matches!(self, Fault::Partition | Fault::OneWay)
    }

    pub fn parse(name: &str) -> Result<Fault, String> {
        match name {
            "kill" => Ok(Fault::KillOne),
            "kill-all" => Ok(Fault::KillAll),
            "pause" => Ok(Fault::PauseOne),
            "partition" => Ok(Fault::Partition),
            "one-way" => Ok(Fault::OneWay),
            other => Err(format!(
                "unknown fault {other:?} (kill, kill-all, pause, partition, one-way)"
            )),
        }
    }
}

fn lock(cluster: &Mutex<Cluster>) -> std::sync::MutexGuard<'_, Cluster> {
    cluster.lock().unwrap_or_else(|e| e.into_inner())
}

/// Injects `faults` at random until `deadline`; returns what it did, with times from `start`.
pub async fn run(
    cluster: Arc<Mutex<Cluster>>,
    network: Option<Network>,
    faults: Vec<Fault>,
    seed: u64,
    start: Instant,
    deadline: Instant,
) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = Vec::new();
    if faults.is_empty() {
        return log;
    }
    let size = lock(&cluster).members.len();
    loop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
        if Instant::now() >= deadline {
            return log;
        }
        let fault = faults[rng.random_range(0..faults.len())];
        let member = rng.random_range(0..size);
        let down_for = Duration::from_millis(rng.random_range(100..900));
        let at = start.elapsed().as_millis();
        match fault {
            Fault::KillOne => {
                lock(&cluster).kill(member);
                tokio::time::sleep(down_for).await;
                let restarted = lock(&cluster).restart(member);
                log.push(format!(
                    "{at} ms: SIGKILL m{member}, restarted after {down_for:?} ({restarted:?})"
                ));
            }
            Fault::KillAll => {
                for i in 0..size {
                    lock(&cluster).kill(i);
                }
                tokio::time::sleep(down_for).await;
                for i in 0..size {
                    let _ = lock(&cluster).restart(i);
                }
                log.push(format!(
                    "{at} ms: SIGKILL every member, restarted after {down_for:?}"
                ));
            }
            Fault::Partition | Fault::OneWay => {
                let Some(network) = &network else {
                    continue;
                };
                // Longer than an election timeout (500 ms), so elections happen on both sides.
                let cut_for = Duration::from_millis(rng.random_range(600..2000));
                if fault == Fault::Partition {
                    network.isolate(member);
                } else {
                    network.deafen(member);
                }
                tokio::time::sleep(cut_for).await;
                network.heal();
                log.push(format!(
                    "{at} ms: {} m{member} for {cut_for:?}",
                    if fault == Fault::Partition {
                        "cut off"
                    } else {
                        "peers' messages lost to"
                    }
                ));
            }
            Fault::PauseOne => {
                lock(&cluster).pause(member);
                tokio::time::sleep(down_for).await;
                lock(&cluster).resume(member);
                log.push(format!(
                    "{at} ms: SIGSTOP m{member}, SIGCONT after {down_for:?}"
                ));
            }
        }
    }
}
