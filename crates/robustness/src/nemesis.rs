//! The faults: a member killed with SIGKILL and restarted on its data dir, every member killed
//! at once, a member paused with SIGSTOP (its sockets open, its timers frozen) and resumed, a
//! member cut off from its peers both ways, and a member that hears nothing from its peers
//! while they still hear it (the last two through [`crate::netproxy`]); with failpoints, a
//! member crashed at a named point of its write path (WAL save and fdatasync, backend commit,
//! snapshot save/send/apply, compaction, defrag, conf change) and restarted ([`crate::crash`]),
//! and a member
//! whose disk stalls (its WAL fdatasync or backend commit blocked for a while); and a member
//! removed and replaced by a new one ([`crate::membership`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::{Cluster, lock};
use crate::netproxy::Network;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    KillOne,
    KillAll,
    PauseOne,
    Partition,
    OneWay,
    CrashPoint,
    StallDisk,
    Replace,
}

/// The faults, by name, for usage texts.
pub const FAULT_NAMES: &str =
    "kill, kill-all, pause, partition, one-way, crash-point, stall-disk, replace";

/// Where a stalled disk blocks the member: its WAL's fdatasync (the Raft loop stops) or its
/// backend commit (applying stops).
const STALL_POINTS: &[&str] = &[
    etcd_failpoints::names::WAL_BEFORE_SYNC,
    etcd_failpoints::names::BACKEND_BEFORE_COMMIT,
];

impl Fault {
    /// Whether the fault needs peer traffic to go through proxies.
    pub fn needs_network(self) -> bool {
        matches!(self, Fault::Partition | Fault::OneWay)
    }

    /// Whether the fault needs the members' failpoints.
    pub fn needs_failpoints(self) -> bool {
        matches!(self, Fault::CrashPoint | Fault::StallDisk)
    }

    pub fn parse(name: &str) -> Result<Fault, String> {
        match name {
            "kill" => Ok(Fault::KillOne),
            "kill-all" => Ok(Fault::KillAll),
            "pause" => Ok(Fault::PauseOne),
            "partition" => Ok(Fault::Partition),
            "one-way" => Ok(Fault::OneWay),
            "crash-point" => Ok(Fault::CrashPoint),
            "stall-disk" => Ok(Fault::StallDisk),
            "replace" => Ok(Fault::Replace),
            other => Err(format!("unknown fault {other:?} ({FAULT_NAMES})")),
        }
    }
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
    let mut crash_points = crate::crash::CrashCycle::new(&mut rng);
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
            Fault::CrashPoint => {
                let point = crash_points.next_point();
                let outcome = crate::crash::crash(
                    &cluster,
                    network.as_ref(),
                    point,
                    member,
                    down_for,
                    &mut rng,
                )
                .await;
                crash_points.settle(outcome.reached);
                log.push(format!("{at} ms: {}", outcome.log));
            }
            Fault::StallDisk => {
                let point = STALL_POINTS[rng.random_range(0..STALL_POINTS.len())];
                let stall_for = Duration::from_millis(rng.random_range(200..2000));
                let Some(addr) = lock(&cluster).members[member].failpoint_addr.clone() else {
                    continue;
                };
                let set = crate::failpoint::set(&addr, point, "pause").await;
                tokio::time::sleep(stall_for).await;
                let cleared = crate::failpoint::clear(&addr, point).await;
                log.push(format!(
                    "{at} ms: m{member}'s disk stalled at {point} for {stall_for:?}{}",
                    match set.and(cleared) {
                        Ok(()) => String::new(),
                        Err(e) => format!(" ({e})"),
                    }
                ));
            }
            Fault::Replace => {
                let outcome =
                    crate::membership::replace(&cluster, network.as_ref(), member, None).await;
                log.push(format!("{at} ms: {outcome}"));
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
